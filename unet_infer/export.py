"""Stage 2: export the PyTorch UNet checkpoint to ONNX.

The guide's command:

    python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx

(the same as ``python3 -m unet_infer.export ./UNet.pth ./UNet_dynamic_bs.onnx``; the guide
moves the script into ./Pytorch_UNet first, which changes nothing). The checkpoint's layout
(ModelZoo, milesial master, bilinear; any width) is read from the state_dict. The graph has
input ``actual_input_1``, output ``output1``, opset 11 and a dynamic batch axis; it is checked
against PyTorch with ONNX Runtime before it is written.
"""

import logging
import warnings
from pathlib import Path

import numpy as np

from . import cli
from .cli import UserError, os_error
from .formats import DEFAULT_SIZE, atomic_path
from .metrics import relative_error
from .weights import weights_id

log = logging.getLogger(__name__)

PROG = "python3 -m unet_infer.export"
INPUT_NAME = "actual_input_1"
OUTPUT_NAME = "output1"
OPSET = 11


def export_model(model, onnx_path, size=572):
    """Trace ``model`` at 1 x C x size x size and write the ONNX file (batch axis dynamic)."""
    import torch  # slow to import: not for --help
    dummy = torch.randn(1, model.n_channels, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is the one that speaks opset 11
        torch.onnx.export(
            model, dummy, str(onnx_path),
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "-1"}, OUTPUT_NAME: {0: "-1"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
        )


def pth_to_onnx(pth_path, onnx_path, size=572, check=True, rtol=1e-4):
    """Load a checkpoint, describe it, export it and check it (a relative error above ``rtol`` fails
    the export, and nothing is left behind); returns a dict of what was found."""
    import onnx
    import torch

    from .backends.onnxruntime_backend import cpu_session
    from .model import count_macs, count_parameters, load_unet
    from .onnxfile import WEIGHTS_KEY, load_onnx, refuse_overwrite, set_metadata
    onnx_path = Path(onnx_path)
    refuse_overwrite(pth_path, onnx_path, "the checkpoint")
    model, layout = load_unet(pth_path)
    info = {"layout": layout.name, "classes": layout.n_classes, "width": layout.width,
            "parameters": count_parameters(model), "gflop_per_image": 2 * count_macs(model, size) / 1e9,
            "size": size, "weights": weights_id(pth_path)}
    log.info("%s: %s", pth_path, layout.describe())
    log.info("%.1f M parameters, %.1f GFLOP per %dx%d image", info["parameters"] / 1e6,
             info["gflop_per_image"], size, size)
    try:
        with atomic_path(onnx_path) as tmp:  # errors name onnx_path, the file asked for
            export_model(model, tmp, size)
            graph = load_onnx(tmp)
            set_metadata(graph, {WEIGHTS_KEY: info["weights"]})  # which checkpoint it was made from
            onnx.save(graph, str(tmp))
            if check:  # ONNX Runtime against PyTorch on one random input
                x = np.random.default_rng(0).random((1, model.n_channels, size, size), dtype=np.float32)
                with torch.inference_mode():
                    ref = model(torch.from_numpy(x)).numpy()
                got = cpu_session(tmp, source=onnx_path).run([OUTPUT_NAME], {INPUT_NAME: x})[0]
                info["relative_error"] = relative_error(got, ref)
                if not info["relative_error"] <= rtol:
                    raise UserError(f"{onnx_path}: ONNX output differs from PyTorch by a relative error of "
                                    f"{info['relative_error']:.3g} (limit --rtol {rtol:g}); nothing was written")
                log.info("ONNX Runtime matches PyTorch: relative error %.2e (limit %g)", info["relative_error"], rtol)
    except OSError as exc:
        raise os_error(onnx_path, exc) from None
    return info


def main(argv=None, prog=PROG):
    parser = cli.parser(prog, __doc__)
    add = parser.add_argument
    add("pth", help="checkpoint: a plain UNet state_dict (.pth)")
    add("onnx", help="ONNX file to write")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="input height and width")
    add("--rtol", type=cli.positive_float, default=1e-4,
        help="largest relative error allowed between ONNX and PyTorch")
    add(*cli.flag("no_check"), dest="check", action="store_false", help="skip the ONNX Runtime parity check")
    args = parser.parse_args(argv)
    info = pth_to_onnx(args.pth, args.onnx, size=args.size, check=args.check, rtol=args.rtol)
    print(f"{args.onnx}: layout {info['layout']}, {info['classes']} classes, width {info['width']}, "
          f"{info['parameters'] / 1e6:.1f} M parameters, {info['gflop_per_image']:.1f} GFLOP per image "
          f"at {args.size}x{args.size}")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
