"""Stage 2: export the PyTorch UNet checkpoint to ONNX.

The guide's command:

    python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx

(the same as ``python3 -m unet_infer.guide.export ./UNet.pth ./UNet_dynamic_bs.onnx``; the guide
moves the script into ./Pytorch_UNet first, which changes nothing). The checkpoint's layout
(ModelZoo, milesial master, bilinear; any width) is read from the state_dict. The graph has
input ``actual_input_1``, output ``output1``, opset 11 and a dynamic batch axis; it is checked
against PyTorch with ONNX Runtime before it is written.
"""

from .. import cli
from ..formats import DEFAULT_SIZE

PROG = "python3 -m unet_infer.guide.export"


def build_parser(prog=PROG):
    parser = cli.parser(prog, __doc__)
    add = parser.add_argument
    add("pth", help="checkpoint: a plain UNet state_dict (.pth)")
    add("onnx", help="ONNX file to write")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="input height and width")
    add("--rtol", type=cli.positive_float, default=1e-4,
        help="largest relative error allowed between ONNX and PyTorch")
    add(*cli.flag("no_check"), dest="check", action="store_false", help="skip the ONNX Runtime parity check")
    return parser


def main(argv=None, prog=PROG):
    args = build_parser(prog).parse_args(argv)
    from ..export import pth_to_onnx  # torch is slow to import: not for --help
    info = pth_to_onnx(args.pth, args.onnx, size=args.size, check=args.check, rtol=args.rtol)
    print(f"{args.onnx}: layout {info['layout']}, {info['classes']} classes, width {info['width']}, "
          f"{info['parameters'] / 1e6:.1f} M parameters, {info['gflop_per_image']:.1f} GFLOP per image "
          f"at {args.size}x{args.size}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
