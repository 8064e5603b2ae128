"""Stage 2: export the PyTorch UNet checkpoint to ONNX.

The guide's command:

    python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx

The checkpoint's layout (ModelZoo, milesial master, bilinear; any width) is read from the
state_dict. The graph has input ``actual_input_1``, output ``output1``, opset 11 and a dynamic
batch axis; it is checked against PyTorch with ONNX Runtime before it is written.
"""

import argparse
import sys

from unet_infer.errors import run_cli
from unet_infer.export import pth_to_onnx


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pth", help="checkpoint: a plain UNet state_dict (.pth)")
    parser.add_argument("onnx", help="ONNX file to write")
    parser.add_argument("--size", type=int, default=572, help="input height and width (default: 572)")
    parser.add_argument("--rtol", type=float, default=1e-4,
                        help="largest relative error allowed between ONNX and PyTorch (default: 1e-4)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip the ONNX Runtime parity check")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    info = pth_to_onnx(args.pth, args.onnx, size=args.size, check=args.check, rtol=args.rtol)
    print(f"{args.onnx}: layout {info['layout']}, {info['classes']} classes, width {info['width']}, "
          f"{info['parameters'] / 1e6:.1f} M parameters, {info['gflop_per_image']:.1f} GFLOP per image "
          f"at {args.size}x{args.size}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
