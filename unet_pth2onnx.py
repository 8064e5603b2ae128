"""Stage 2 of the guide: python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx

A thin script: the command itself is ``python3 -m unet_infer.guide.export`` (``--help`` says what it
does), so this file works from wherever it is moved.
"""

from unet_infer import cli
from unet_infer.guide import export


def main(argv=None):
    return export.main(argv, prog="unet_pth2onnx.py")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
