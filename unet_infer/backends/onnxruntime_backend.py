"""onnxruntime backend: the CPU provider, or TensorRT/CUDA first when this onnxruntime build has them.

Models: ``UNet_bs<B>.onnx`` (fp32) and ``UNet_int8_bs<B>.onnx`` (int8: the simplified model
quantised by ``unet_infer.quantize``, QDQ), each compiled for one batch size by
``python3 -m unet_infer.compile``: the batch axis fixed and onnxruntime's graph optimisations
saved (metadata ``unet_infer.optimized=1``), so that loading does not optimise again. Like an
atc .om file, a compiled model is tuned to this machine's CPU and onnxruntime version.
"""

import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..cli import UserError, first_line, os_error
from ..formats import DEFAULT_SIZE, atomic_path
from ..onnxfile import WEIGHTS_KEY, fix_batch, is_quantized, load_onnx, metadata, refuse_overwrite, set_metadata
from ..rebatch import is_pinned, log_rebatched, onnx_batch, ort_check, rebatch_onnx, tolerance_for
from .base import Backend, TensorSpec, check_outputs, resolve_batchsize, run_shape

log = logging.getLogger(__name__)

OPTIMIZED_KEY = "unet_infer.optimized"
BATCHSIZE_KEY = "unet_infer.batchsize"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
          "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def session_options(threads, optimize=True):
    """Sequential execution on ``threads`` threads, full graph optimisation unless done already."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.log_severity_level = 3
    return so


def new_session(model, options, providers, source=None):
    """An InferenceSession of a path or serialized bytes; one onnxruntime cannot load is a UserError."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as state
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except (state.Fail, state.InvalidArgument, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile,
            state.NotImplemented, state.RuntimeException) as exc:
        raise UserError(f"{source or model}: onnxruntime cannot load it ({first_line(exc)})") from None


def cpu_session(model, threads=None, optimize=True, source=None, save_to=None):
    """A session on the CPU provider; ``save_to``: where onnxruntime writes the graph it optimised."""
    options = session_options(threads, optimize)
    if save_to:
        options.optimized_model_filepath = str(save_to)
    return new_session(model, options, ["CPUExecutionProvider"], source)


def check_compiled(path, batchsize, threads, batch_check=None):  # base.check_outputs on the CPU provider
    session = cpu_session(path, threads, optimize=False)
    specs = [TensorSpec(arg.name, tuple(arg.shape), DTYPES[arg.type]) for arg in session.get_inputs()]
    check_outputs(path, batchsize, specs, [o.name for o in session.get_outputs()], lambda arrays: (
        session.run(None, {spec.name: a for spec, a in zip(specs, arrays)})), batch_check)


def fix_or_rebatch(model, batchsize, source, check, session):
    """``(model fixed at batchsize, BatchCheck or None)``: a batch pinned to 1 is re-batched, checked
    against ``session(the batch-1 model)`` unless ``check`` is off."""
    if metadata(model).get(OPTIMIZED_KEY) == "1" or not is_pinned(onnx_batch(model), batchsize):
        return fix_batch(model, batchsize, source), None  # a compiled model is not compiled again
    original = model.SerializeToString() if check else None
    tolerance = tolerance_for(is_quantized(model))
    model = rebatch_onnx(model, batchsize, source)
    if not check:
        log_rebatched(source, batchsize)
        return model, None
    return model, ort_check(original, source, batchsize, tolerance, session)


class OnnxRuntimeBackend(Backend):
    """An ``InferenceSession`` fed through io_binding, so that copies stay outside ``run``."""

    name = "onnxruntime"
    package = "onnxruntime"
    precisions = ("fp32", "int8")
    quantized = ("int8",)
    quantized_name = "UNet_int8.onnx"
    quantizer = "unet_infer.quantize.onnxruntime"
    can_profile = True  # onnxruntime's enable_profiling trace: each node's kernel time

    @classmethod
    def compile(cls, src, dst, batchsize, threads=None, size=DEFAULT_SIZE, check=True):
        import onnx
        import onnxruntime as ort
        src, dst = Path(src), Path(dst)
        refuse_overwrite(src, dst)
        model, batch_check = fix_or_rebatch(load_onnx(src), batchsize, src, check,
                                            lambda m: cpu_session(m, threads, source=src))
        kept = metadata(model)  # onnxruntime's optimised file keeps no metadata: carried over below
        try:
            with atomic_path(dst) as tmp:  # onnxruntime writes the optimised graph there, completed below
                cpu_session(model.SerializeToString(), threads, source=f"{src} at batch {batchsize}", save_to=tmp)
                model = onnx.load(tmp)
                set_metadata(model, dict(kept, **{OPTIMIZED_KEY: "1", BATCHSIZE_KEY: str(batchsize)}))
                onnx.save(model, tmp)
                if check:
                    check_compiled(tmp, batchsize, threads, batch_check)
        except OSError as exc:
            raise os_error(dst, exc) from None
        log.info("wrote %s (batch %d, onnxruntime %s optimisations)", dst, batchsize, ort.__version__)
        return dst

    @classmethod
    def fixed_batchsize(cls, model_path):
        return onnx_batch(load_onnx(model_path, weights=False))

    @staticmethod
    def has_gpu():
        import onnxruntime as ort
        return any(p in ort.get_available_providers() for p in GPU_PROVIDERS)

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE,
             profile=False):
        import onnxruntime as ort
        model = load_onnx(model_path, weights=False)
        optimized = metadata(model).get(OPTIMIZED_KEY) == "1"
        pinned = not optimized and is_pinned(onnx_batch(model), batchsize)
        self.batchsize = batchsize if pinned else resolve_batchsize(onnx_batch(model), batchsize, model_path)
        self.weights = metadata(model).get(WEIGHTS_KEY)
        self.precision = "int8" if is_quantized(model) else "fp32"
        self.check_quantized(model_path, precision, self.precision == "int8", self.batchsize)
        del model
        gpu = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
        providers = [(p, {"device_id": device}) for p in gpu] + ["CPUExecutionProvider"]
        so = session_options(threads, not optimized)
        self._profile_dir = tempfile.mkdtemp(prefix="unet_ort_profile.") if profile else None
        if self._profile_dir:  # --profile: onnxruntime's trace, read back by profile()
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(self._profile_dir) / "ort")
        source, batch_check = str(model_path), None
        if pinned:  # the guide's onnxsim output: re-batched here, checked below
            model, batch_check = fix_or_rebatch(load_onnx(model_path), batchsize, model_path, True, lambda m: (
                new_session(m, session_options(threads), providers, model_path)))
            source = model.SerializeToString()
            del model
        self.session = new_session(source, so, providers, model_path)
        self.device = ("cuda", device) if self.session.get_providers()[0] in GPU_PROVIDERS else ("cpu", 0)
        self.inputs = []
        for arg in self.session.get_inputs():
            if arg.type not in DTYPES:
                raise UserError(f"{model_path}: input {arg.name} has type {arg.type}, which the runner cannot feed")
            dims = [dim if isinstance(dim, int) and dim > 0 else None for dim in arg.shape]
            self.inputs.append(TensorSpec(arg.name, run_shape(dims, self.batchsize, size, model_path, arg.name),
                                          np.dtype(DTYPES[arg.type])))
        self.output_names = [out.name for out in self.session.get_outputs()]
        if batch_check:
            arrays = batch_check.inputs([(spec.shape, spec.dtype) for spec in self.inputs])
            batch_check.verify(arrays, self.infer(*arrays))
        log.info("onnxruntime %s on %s, %s threads, %s, graph %s", ort.__version__,
                 self.session.get_providers()[0], threads, self.precision,
                 "optimised at compile time" if optimized else "optimised at load")

    def device_name(self):
        return f"cuda:{self.device[1]}" if self.device[0] == "cuda" else "cpu"

    def upload(self, *arrays, wait=True):
        import onnxruntime as ort
        return [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a), *self.device) for a in arrays]

    def run(self, *values):
        binding = self.session.io_binding()
        for spec, value in zip(self.inputs, values):
            binding.bind_ortvalue_input(spec.name, value)
        for name in self.output_names:
            binding.bind_output(name, *self.device)
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.get_outputs()

    def download(self, outputs):
        return [value.numpy() for value in outputs]

    def profile(self):  # each node's mean kernel time in onnxruntime's trace, over the runs after the first
        try:
            events = json.loads(Path(self.session.end_profiling()).read_text(encoding="utf-8"))
        finally:
            shutil.rmtree(self._profile_dir, ignore_errors=True)
        runs = sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
        times = {}
        for event in events:
            name = event.get("name", "")
            if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
                continue
            args = event.get("args", {})
            entry = times.setdefault(name.removesuffix("_kernel_time"),
                                     (args.get("op_name", ""), args.get("provider", ""), []))
            entry[2].append(event.get("dur", 0) / 1000.0)
        rows = [{"name": name, "type": op, "exec_type": provider, "ms": sum(durs[1:] or durs) / len(durs[1:] or durs)}
                for name, (op, provider, durs) in times.items()]
        return rows, max(runs - 1, 1)

    def close(self):
        self.session = None
        if getattr(self, "_profile_dir", None):
            shutil.rmtree(self._profile_dir, ignore_errors=True)


BACKEND = OnnxRuntimeBackend
