"""The guide's `python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx`:
``python3 -m unet_infer.export`` under this name, from wherever the file is moved.
"""

from functools import partial

from unet_infer import cli, export

main = partial(export.main, prog="unet_pth2onnx.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
