"""PyTorch UNet -> ONNX, as the guide's ``unet_pth2onnx.py`` does, plus a parity check.

Input ``actual_input_1``, output ``output1``, opset 11, batch axis dynamic, traced on a
1 x 3 x S x S dummy. The exported graph is run with ONNX Runtime on a random input and compared
with PyTorch: a relative error above ``rtol`` fails the export (nothing is left behind).
"""

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .cli import UserError, os_error
from .formats import atomic_path
from .metrics import relative_error
from .weights import weights_id
from .model import count_macs, count_parameters, load_unet

log = logging.getLogger(__name__)

INPUT_NAME = "actual_input_1"
OUTPUT_NAME = "output1"
OPSET = 11


def export_model(model, onnx_path, size=572, opset=OPSET):
    """Trace ``model`` at 1 x C x size x size and write the ONNX file (batch axis dynamic)."""
    dummy = torch.randn(1, model.n_channels, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is the one that speaks opset 11
        torch.onnx.export(
            model, dummy, str(onnx_path),
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "-1"}, OUTPUT_NAME: {0: "-1"}},
            opset_version=opset, do_constant_folding=True, dynamo=False,
            training=torch.onnx.TrainingMode.EVAL,
        )


def check_parity(model, onnx_path, size, batch=1, rtol=1e-4, seed=0, name=None):
    """Run PyTorch and ONNX Runtime on the same random input; return the relative error.

    ``name``: the file the user asked for, named in errors (``onnx_path`` may be a temporary file)."""
    name = name or onnx_path
    import onnxruntime as ort

    x = torch.from_numpy(np.random.default_rng(seed).random((batch, model.n_channels, size, size),
                                                             dtype=np.float32))
    with torch.inference_mode():
        ref = model(x).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = os.cpu_count() or 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    if got.shape != ref.shape:
        raise UserError(f"{name}: ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    err = relative_error(got, ref)
    if not err <= rtol:
        raise UserError(f"{name}: ONNX output differs from PyTorch by a relative error of "
                        f"{err:.3g} (limit --rtol {rtol:g}); nothing was written")
    return err


def pth_to_onnx(pth_path, onnx_path, size=572, check=True, rtol=1e-4):
    """Load a checkpoint, describe it, export it and check it; returns a dict of what was found."""
    onnx_path = Path(onnx_path)
    if onnx_path.is_dir():
        raise UserError(f"{onnx_path}: is a folder, expected an .onnx file name")
    if onnx_path.exists() and Path(pth_path).exists() and onnx_path.resolve() == Path(pth_path).resolve():
        raise UserError(f"{onnx_path}: the output must not overwrite the checkpoint; name another .onnx file")
    if not onnx_path.parent.is_dir():
        raise UserError(f"{onnx_path.parent}: output folder not found")
    if size < 16:
        raise UserError(f"--size {size}: the UNet needs at least 16 x 16 (four 2x poolings)")
    model, layout = load_unet(pth_path)
    info = {
        "layout": layout.name,
        "bilinear": layout.bilinear,
        "conv_bias": layout.bias,
        "input_channels": layout.n_channels,
        "classes": layout.n_classes,
        "width": layout.width,
        "parameters": count_parameters(model),
        "gflop_per_image": 2 * count_macs(model, size) / 1e9,
        "size": size,
        "weights": weights_id(pth_path),
    }
    log.info("%s: %s", pth_path, layout.describe())
    log.info("%.1f M parameters, %.1f GFLOP per %dx%d image", info["parameters"] / 1e6,
             info["gflop_per_image"], size, size)
    try:
        with atomic_path(onnx_path) as tmp:
            _export_checked(model, tmp, size, check, rtol, onnx_path, info)
    except OSError as exc:
        raise os_error(onnx_path, exc) from None
    return info


def stamp_weights(onnx_path, weights):
    """Record which checkpoint the ONNX file was made from (metadata ``unet_infer.weights``)."""
    from .onnxfile import WEIGHTS_KEY, load_onnx, save_onnx, set_metadata
    model = load_onnx(onnx_path)
    set_metadata(model, {WEIGHTS_KEY: weights})
    save_onnx(model, onnx_path)


def _export_checked(model, tmp, size, check, rtol, onnx_path, info):
    """Export to ``tmp`` and, with ``check``, compare it with PyTorch (errors name ``onnx_path``)."""
    export_model(model, tmp, size)
    stamp_weights(tmp, info["weights"])
    if check:
        info["relative_error"] = check_parity(model, tmp, size, rtol=rtol, name=onnx_path)
        log.info("ONNX Runtime matches PyTorch: relative error %.2e (limit %g)", info["relative_error"], rtol)
