"""Stage 1 of the guide: python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin

A thin script: the command itself is ``python3 -m unet_infer.guide.preprocess`` (``--help`` says what it
does), so this file works from wherever it is moved.
"""

from unet_infer import cli
from unet_infer.guide import preprocess


def main(argv=None):
    return preprocess.main(argv, prog="preprocess_unet_pth.py")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
