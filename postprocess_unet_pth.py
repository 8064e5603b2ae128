"""Stage 6 of the guide: python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks --result=./result.txt

A thin script: the command itself is ``python3 -m unet_infer.guide.postprocess`` (``--help`` says what it
does), so this file works from wherever it is moved.
"""

from unet_infer import cli
from unet_infer.guide import postprocess


def main(argv=None):
    return postprocess.main(argv, prog="postprocess_unet_pth.py")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
