"""Compile a dynamic-batch ONNX model for one batch size: the CPU counterpart of the guide's atc step.

    python3 -m unet_infer.compile --model UNet_dynamic_sim.onnx --batchsize 8 --output UNet_bs8.onnx

The batch axis of every input and output is fixed to --batchsize, shapes are inferred, and the
graph is saved with onnxruntime's full optimisations applied (metadata ``unet_infer.optimized=1``,
so the runner loads it without optimising again). Like an atc .om file, the result is tuned to
this machine's CPU and onnxruntime version. On an Ascend machine use scripts/atc.sh instead.
"""

import argparse
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from .backends.onnxruntime_backend import BATCHSIZE_KEY, DTYPES, OPTIMIZED_KEY, ORT_ERRORS, session_options
from .errors import HelpFormatter, UserError, run_cli

log = logging.getLogger(__name__)


def load_onnx(path):
    """An ONNX model with its weights; a missing or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model not found")
    try:
        return onnx.load(str(path))
    except (DecodeError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not an ONNX model ({str(exc).strip()[:200]})") from None


def fix_batch(model, batchsize, source):
    """Set axis 0 of every graph input and output to ``batchsize``, then infer the inner shapes again."""
    weights = {init.name for init in model.graph.initializer}
    for value in [v for v in model.graph.input if v.name not in weights] + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise UserError(f"{source}: {value.name} has no batch axis to fix")
        if dims[0].HasField("dim_value") and dims[0].dim_value not in (0, batchsize):
            raise UserError(f"{source}: {value.name} already has a fixed batch of {dims[0].dim_value}; "
                            f"compile the dynamic-batch model")
        dims[0].dim_value = batchsize
    del model.graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def set_metadata(model, props):
    """Replace (or add) metadata_props entries."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(kept, **props))


def check_model(path, batchsize, threads):
    """Load the compiled model as the runner does and run one zero batch; the output batch must match."""
    session = ort.InferenceSession(str(path), session_options(threads, optimize=False),
                                   providers=["CPUExecutionProvider"])
    feed = {arg.name: np.zeros(arg.shape, DTYPES[arg.type]) for arg in session.get_inputs()}
    for name, out in zip([o.name for o in session.get_outputs()], session.run(None, feed)):
        if out.ndim == 0 or out.shape[0] != batchsize:
            raise UserError(f"{path}: output {name} has shape {out.shape}, expected batch {batchsize}")
        log.info("checked: output %s %s", name, out.shape)


def compile_onnx(src, dst, batchsize, threads=None, check=True):
    """Write ``dst``: ``src`` fixed at ``batchsize`` and optimised by onnxruntime, atomically."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: the output must not overwrite the source model")
    model = fix_batch(load_onnx(src), batchsize, src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = session_options(threads)
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3  # its warning says what the docstring says: machine-specific
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except ORT_ERRORS as exc:
            raise UserError(f"{src}: onnxruntime cannot load it at batch {batchsize} ({exc})") from None
        model = onnx.load(str(optimized))
        set_metadata(model, {OPTIMIZED_KEY: "1", BATCHSIZE_KEY: str(batchsize)})
        final = Path(tmp) / dst.name
        onnx.save(model, str(final))
        if check:
            check_model(final, batchsize, threads)
        os.replace(final, dst)
    log.info("wrote %s (batch %d, onnxruntime %s optimisations)", dst, batchsize, ort.__version__)
    return dst


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.compile", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="the dynamic-batch ONNX model (e.g. UNet_dynamic_sim.onnx)")
    parser.add_argument("--batchsize", type=int, required=True, help="the batch size to fix")
    parser.add_argument("--output", required=True, help="the compiled model (e.g. UNet_bs8.onnx)")
    parser.add_argument("--threads", type=int, help="onnxruntime threads (without it: its own default)")
    parser.add_argument("--no_check", "--no-check", action="store_true",
                        help="skip the test run of one zero batch (it costs as much as one batch of inference)")
    args = parser.parse_args(argv)
    if args.batchsize < 1:
        raise UserError(f"--batchsize {args.batchsize}: must be at least 1")
    compile_onnx(args.model, args.output, args.batchsize, args.threads, check=not args.no_check)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
