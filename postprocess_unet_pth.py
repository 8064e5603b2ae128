"""Stage 6: score the model's outputs against the Carvana masks.

The guide's command:

    python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks --result=./result.txt

Each --output/<stem>.bin (float32 logits, 1 or 2 x size x size; <stem>_0.bin is accepted when
json_parse was not run) is compared with --label/<stem>_mask.gif (resized with NEAREST to
size x size when needed). Files other than .bin are skipped with a warning.

Writes --result (a header, then "name IoU Dice" per image, natural order) and a JSON of the
same stem beside it (means, the ModelZoo figure, per-image values), and prints one line:
the mean IoU over all images, then the guide's figure, which leaves out images with IoU < 0.5.
"""

import argparse
import sys

from unet_infer.errors import run_cli
from unet_infer.formats import DEFAULT_SIZE
from unet_infer.postprocess import result_json_path, score_folder, summary_line, write_results
from unet_infer.progress import set_quiet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder of the model's output .bin files")
    parser.add_argument("--label", required=True, help="folder of the <stem>_mask.gif masks")
    parser.add_argument("--result", required=True,
                        help="per-image result text file; the .json of the same stem goes beside it")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help="model output height and width (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    set_quiet(args.quiet)
    result_json_path(args.result)  # a bad --result fails before the scoring, not after
    records = score_folder(args.output, args.label, size=args.size, workers=args.workers)
    print(summary_line(write_results(records, args.result)))


if __name__ == "__main__":
    sys.exit(run_cli(main))
