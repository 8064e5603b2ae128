"""Stage 1: convert the Carvana images to the model's input files.

The guide's command:

    python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin

(the same as ``python3 -m unet_infer.guide.preprocess ...``). Every .jpg/.jpeg/.png in --src_path
(not recursive; other files are skipped with a warning) becomes --save_bin_path/<stem>.bin: RGB,
resized to size x size (PIL's default bicubic, aspect ratio not kept), float32 CHW in [0, 1],
3*572*572*4 = 3,926,208 bytes at 572. Files already in --save_bin_path are kept. An unreadable
image is named in a warning, the others are still written, and the run ends with an error
listing the unreadable ones; with --skip_unreadable it ends with a line listing them instead
(status 0), and the next stages run on the others.
"""

from .. import cli
from ..cli import UserError
from ..progress import set_quiet
from . import add_size_and_workers

PROG = "python3 -m unet_infer.guide.preprocess"


def build_parser(prog=PROG):
    parser = cli.parser(prog, __doc__)
    add = parser.add_argument
    add(*cli.flag("src_path"), dest="src_path", required=True, help="folder of images (.jpg/.jpeg/.png)")
    add(*cli.flag("save_bin_path"), dest="save_bin_path", required=True,
        help="folder for the <stem>.bin files (created if missing; nothing is deleted)")
    add(*cli.flag("skip_unreadable"), dest="skip_unreadable", action="store_true",
        help="an image that cannot be read is left out and listed at the end, and the run succeeds (without "
             "it: the others are converted, then an error lists it)")
    add_size_and_workers(parser, "model input height and width")
    return parser


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    set_quiet(args.quiet)
    from ..preprocess import preprocess_folder
    written, bad = preprocess_folder(args.src_path, args.save_bin_path, size=args.size, workers=args.workers)
    print(f"wrote {written} file{'s' if written != 1 else ''} of {args.size}x{args.size} input to "
          f"{args.save_bin_path}")
    if bad and args.skip_unreadable:
        print(f"skipped {len(bad)} unreadable image(s), not converted (left out of the next stages): "
              f"{', '.join(bad)}")
    elif bad:
        raise UserError(f"{len(bad)} unreadable image(s), not converted: {', '.join(bad)} (--skip_unreadable "
                        f"leaves them out and goes on; scripts/run_all.sh: unreadable=skip)")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
