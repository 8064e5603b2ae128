"""Stage 6: score the model's outputs against the Carvana masks.

The guide's command:

    python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks --result=./result.txt

(the same as ``python3 -m unet_infer.guide.postprocess ...``). Each --output/<stem>.bin (float32
logits, 1 or 2 x size x size; <stem>_0.bin is accepted when json_parse was not run) is compared
with --label/<stem>_mask.gif, or <stem>_mask.png where there is no GIF (resized with NEAREST to
size x size when needed). Files other than .bin are skipped with a warning.

Writes --result (a header, then "name IoU Dice" per image, natural order) and a JSON of the
same stem beside it (means, the ModelZoo figure, per-image values, and what the run was made
from: the model, weights, backend, precision and batch size from the runner's summary beside
--output, e.g. result/bs8_summary.json, and the folders scored), and prints one line:
the mean IoU over all images, then the guide's figure, which leaves out images with IoU < 0.5.
"""

from .. import cli
from ..progress import set_quiet
from . import add_size_and_workers

PROG = "python3 -m unet_infer.guide.postprocess"


def build_parser(prog=PROG):
    parser = cli.parser(prog, __doc__)
    add = parser.add_argument
    add("--output", required=True, help="folder of the model's output .bin files")
    add("--label", required=True, help="folder of the <stem>_mask.gif (or <stem>_mask.png) masks")
    add("--result", required=True, help="per-image result text file; the .json of the same stem goes beside it")
    add_size_and_workers(parser, "model output height and width")
    return parser


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    set_quiet(args.quiet)
    from ..postprocess import run_provenance, score_folder
    from ..results import check_writable, iou_line, write_results
    check_writable(args.result, inputs=[args.output, args.label])  # before the scoring, not after
    records = score_folder(args.output, args.label, size=args.size, workers=args.workers)
    print(iou_line(write_results(records, args.result, run_provenance(args.output, args.label, args.size))))


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
