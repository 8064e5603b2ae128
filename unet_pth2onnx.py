"""The guide's `python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx`:
``python3 -m unet_infer.guide.export`` under this name, from wherever the file is moved.
"""

from unet_infer import cli
from unet_infer.guide import export, script

main = script(export, "unet_pth2onnx.py")

if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
