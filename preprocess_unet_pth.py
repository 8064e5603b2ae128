"""Stage 1: convert the Carvana images to the model's input files.

The guide's command:

    python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin

Every .jpg/.jpeg/.png in --src_path (not recursive; other files are skipped with a warning)
becomes --save_bin_path/<stem>.bin: RGB, resized to size x size (PIL's default bicubic,
aspect ratio not kept), float32 CHW in [0, 1], 3*572*572*4 = 3,926,208 bytes at 572.
Files already in --save_bin_path are kept. An unreadable image is named in a warning, the
others are still written, and the run ends with an error listing the unreadable ones.
"""

import argparse
import sys

from unet_infer.errors import UserError, run_cli
from unet_infer.formats import DEFAULT_SIZE
from unet_infer.preprocess import preprocess_folder
from unet_infer.progress import set_quiet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src_path", required=True, help="folder of images (.jpg/.jpeg/.png)")
    parser.add_argument("--save_bin_path", required=True,
                        help="folder for the <stem>.bin files (created if missing; nothing is deleted)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help="model input height and width (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    set_quiet(args.quiet)
    written, bad = preprocess_folder(args.src_path, args.save_bin_path, size=args.size,
                                     workers=args.workers)
    print(f"wrote {written} files of {args.size}x{args.size} input to {args.save_bin_path}")
    if bad:
        raise UserError(f"{len(bad)} unreadable image(s), not converted: {', '.join(bad)}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
