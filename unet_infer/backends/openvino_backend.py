"""OpenVINO backend: Intel's CPU runtime, which runs bf16 and INT8 convolutions on AMX (and INT8 on
AVX-512 VNNI / AVX2) where the CPU has them.

Models: OpenVINO IR (``.xml``, its weights in the ``.bin`` beside it) with a static shape per batch
size, as atc writes an .om (``python3 -m unet_infer.compile --backend openvino``); one IR serves
fp32 and bf16 (``INFERENCE_PRECISION_HINT``, given at load); an INT8 IR (NNCF's FakeQuantize
nodes) runs as INT8. The precision recorded is what the compiled model runs its convolutions in,
not what was asked: a CPU without bf16 runs fp32, and says so. An ``.onnx`` model loads too.
The IR's rt_info carries the checkpoint's id.
"""

import functools
import logging
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

from ..cli import UserError, int_at_least, os_error
from ..formats import DEFAULT_SIZE
from ..onnxfile import WEIGHTS_KEY, model_not_found, refuse_overwrite
from ..rebatch import is_pinned, log_rebatched, ov_rebatched, tolerance_for
from .. import openvino_telemetry_off
from .base import Backend, Option, TensorSpec, check_outputs, resolve_batchsize, run_shape

openvino_telemetry_off()  # before the package imports openvino or nncf

log = logging.getLogger(__name__)

HINTS = {"fp32": "f32", "bf16": "bf16"}  # --precision -> INFERENCE_PRECISION_HINT
RT_WEIGHTS = ["unet_infer", "weights"]  # rt_info path of the checkpoint's id (WEIGHTS_KEY in ONNX files)
RT_BATCHSIZE = ["unet_infer", "batchsize"]
RUNTIME_PRECISIONS = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f16": "fp16"}  # in this order; else fp32
COMPUTE_LAYERS = ("Convolution", "Deconvolution", "FullyConnected", "MatMul")


@functools.cache
def core():
    import openvino as ov
    return ov.Core()


def read_model(path):
    """An ``ov.Model`` from an IR (.xml) or an ONNX file; a missing or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(model_not_found(path))
    if path.suffix.lower() == ".xml" and not path.with_suffix(".bin").is_file():
        raise UserError(f"{path}: its weights {path.with_suffix('.bin').name} are missing beside it")
    try:
        return core().read_model(str(path))
    except RuntimeError as exc:
        raise UserError(f"{path}: OpenVINO cannot read it ({ov_message(exc)})") from None


def ov_message(exc):
    """The first line of OpenVINO's error after the C++ source location it starts with."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '", "[ GENERAL_ERROR ]"))]
    return (useful or lines or [type(exc).__name__])[0][:200]


def rt_text(model, path):
    if not model.has_rt_info(path):
        return None
    return model.get_rt_info(path).astype(str) or None


def weights_of(model, path):
    """The checkpoint the model was made from: the IR's rt_info, or an ONNX file's metadata."""
    found = rt_text(model, RT_WEIGHTS)
    if found is None and Path(path).suffix.lower() == ".onnx":
        from ..onnxfile import load_onnx, metadata
        found = metadata(load_onnx(path, weights=False)).get(WEIGHTS_KEY)
    return found


def stamp(model, weights=None, batchsize=None):
    if weights:
        model.set_rt_info(weights, RT_WEIGHTS)
    if batchsize:
        model.set_rt_info(str(batchsize), RT_BATCHSIZE)


def is_int8(model):
    """Whether the model holds FakeQuantize nodes (NNCF's, or ONNX Q/DQ read as such)."""
    return any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def model_batch(model):  # None: a dynamic batch
    shape = model.input(0).get_partial_shape()
    return shape[0].get_length() if shape.rank.is_static and shape[0].is_static else None


def fix_shapes(model, batchsize, size, source):
    """Reshape every input by base.run_shape's rule (``batchsize`` None: the batch axis as it is)."""
    import openvino as ov
    shapes = {}
    for port in model.inputs:
        shape = port.get_partial_shape()
        if shape.rank.is_dynamic:
            raise UserError(f"{source}: input {port.any_name} has no fixed rank")
        dims = [dim.get_length() if dim.is_static else None for dim in shape]
        shapes[port] = ov.PartialShape(list(run_shape(dims, batchsize or dims[0] or -1, size, source, port.any_name)))
    try:
        model.reshape(shapes)
    except RuntimeError as exc:
        raise UserError(f"{source}: OpenVINO cannot reshape it to {list(shapes.values())} "
                        f"({ov_message(exc)})") from None
    return model


def runtime_precision(compiled):
    """What the compiled model computes in: its convolutions' runtime precision."""
    found = set()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str) in COMPUTE_LAYERS:
            found.add(info["runtimePrecision"].astype(str).lower())
    return next((name for ov_type, name in RUNTIME_PRECISIONS.items() if ov_type in found), "fp32")


def compile_config(precision, int8, threads=None, nireq=None, profile=False):  # the CPU plugin's properties
    config = {"PERFORMANCE_HINT": "THROUGHPUT" if nireq else "LATENCY"}
    if nireq:
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = nireq
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    if not int8:
        config["INFERENCE_PRECISION_HINT"] = HINTS[precision or "fp32"]
    if profile:
        config["PERF_COUNT"] = True
    return config


def compile_for_cpu(model, config, source):
    try:
        return core().compile_model(model, "CPU", config)
    except RuntimeError as exc:
        raise UserError(f"{source}: OpenVINO cannot compile it for the CPU ({ov_message(exc)})") from None


def save_ir(model, dst, check=None):
    """Write ``dst`` (.xml) and its .bin atomically, weights in fp32 (not OpenVINO's fp16 default);
    ``check(path)`` runs on the written IR before it takes ``dst``'s place."""
    import openvino as ov
    dst = Path(dst)
    if dst.suffix.lower() != ".xml":
        raise UserError(f"{dst}: an OpenVINO IR is an .xml file (with its .bin beside it)")
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as tmp:
        staged = Path(tmp) / dst.name
        try:
            ov.save_model(model, str(staged), compress_to_fp16=False)
            if check:
                check(staged)
            os.replace(staged.with_suffix(".bin"), dst.with_suffix(".bin"))
            os.replace(staged, dst)
        except OSError as exc:
            raise os_error(dst, exc) from None
    return dst


def check_compiled(path, batchsize, threads=None, batch_check=None):
    """:func:`base.check_outputs` of the written IR, loaded as the runner does."""
    backend = OpenVinoBackend()
    backend.load(path, threads=threads, precision=None)
    try:
        check_outputs(path, batchsize, backend.inputs, backend.output_names, lambda arrays: backend.infer(*arrays),
                      batch_check)
    finally:
        backend.close()


class OpenVinoBackend(Backend):
    """One compiled model on the CPU plugin: one infer request, or (``--nireq N``) an async queue of N."""

    name = "openvino"
    package = "openvino"
    precisions = ("fp32", "bf16", "int8")  # fp32 first: the default keeps the reference results
    quantized = ("int8",)
    quantized_name = "UNet_int8.xml"
    quantizer = "unet_infer.quantize.openvino"
    model_suffixes = (".xml",)
    options = (
        Option("nireq", "openvino backend: throughput mode, N asynchronous infer requests in flight "
                        "(OpenVINO's THROUGHPUT hint; without it: one request, the LATENCY hint)",
               type=int_at_least(1), default=None),
    )
    can_profile = True  # the CPU plugin's performance counters (PERF_COUNT)

    @classmethod
    def compile(cls, src, dst, batchsize, threads=None, size=DEFAULT_SIZE, check=True):
        import openvino as ov
        src, dst = Path(src), Path(dst)
        refuse_overwrite(src, dst)
        model = read_model(src)
        weights = weights_of(model, src)
        fixed, batch_check = model_batch(model), None
        if is_pinned(fixed, batchsize) and rt_text(model, RT_BATCHSIZE) is None:  # not one compiled here
            config = compile_config(None, is_int8(model), threads)  # the check run's, as check_compiled loads it
            batch_check = ov_rebatched(model, batchsize, src, tolerance_for(is_int8(model)), lambda m, n: (
                fix_shapes(m, n, size, src)), lambda m: compile_for_cpu(m, config, src))
            if not check:
                log_rebatched(src, batchsize)
        elif fixed is not None and fixed != batchsize:
            raise UserError(f"{src}: the model's batch size is fixed at {fixed}; compile the dynamic-batch model")
        else:
            fix_shapes(model, batchsize, size, src)
        stamp(model, weights, batchsize)
        save_ir(model, dst, check=(lambda staged: check_compiled(staged, batchsize, threads, batch_check))
                if check else None)
        log.info("wrote %s (batch %d, static shape, OpenVINO %s)", dst, batchsize, ov.__version__)
        return dst

    @classmethod
    def fixed_batchsize(cls, model_path):
        return model_batch(read_model(model_path))

    def load(self, model_path, batchsize=None, device=0, precision=None, threads=None, size=DEFAULT_SIZE,
             profile=False, nireq=None):
        import openvino as ov
        model = read_model(model_path)
        self.weights = weights_of(model, model_path)
        int8 = is_int8(model)
        self.check_quantized(model_path, precision, int8, batchsize)
        config, batch_check = compile_config(precision, int8, threads, nireq, profile), None
        if is_pinned(model_batch(model), batchsize) and rt_text(model, RT_BATCHSIZE) is None:  # checked below
            self.batchsize = batchsize
            batch_check = ov_rebatched(model, batchsize, model_path, tolerance_for(int8 or precision == "bf16"),
                                       lambda m, n: fix_shapes(m, n, size, model_path),
                                       lambda m: compile_for_cpu(m, dict(config, PERF_COUNT=False), model_path))
        else:
            self.batchsize = resolve_batchsize(model_batch(model), batchsize, model_path)
            fix_shapes(model, self.batchsize, size, model_path)
        self.compiled = compile_for_cpu(model, config, model_path)
        del model
        self.precision = runtime_precision(self.compiled)
        asked = "int8" if int8 else (precision or "fp32")
        if self.precision != asked:
            log.warning("asked for %s, but OpenVINO runs %s on this CPU (%s); the summary says %s", asked,
                        self.precision, ", ".join(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
                        self.precision)
        self.inputs = [TensorSpec(port.any_name, tuple(port.get_shape()), np.dtype(port.get_element_type().to_dtype()))
                       for port in self.compiled.inputs]
        self.output_names = [port.any_name for port in self.compiled.outputs]
        self.request = self.compiled.create_infer_request()
        if batch_check:  # before any run is counted
            arrays = batch_check.inputs([(spec.shape, spec.dtype) for spec in self.inputs])
            batch_check.verify(arrays, list(self.request.infer(arrays).to_tuple()))
        self.profiling = bool(profile)
        self._layers = {}
        self._seen = 0
        self._lock = threading.Lock()  # the counters of requests finishing at once (throughput mode)
        self.async_requests = int(nireq or 0)
        self.queue = None
        if self.async_requests:
            self.queue = ov.AsyncInferQueue(self.compiled, self.async_requests)
            self.queue.set_callback(self._finished)
        streams = self.compiled.get_property("NUM_STREAMS")
        log.info("openvino %s on the CPU: %s, %s thread(s), %s stream(s), %s", ov.__version__, self.precision,
                 self.compiled.get_property("INFERENCE_NUM_THREADS"), streams,
                 f"{self.async_requests} requests in flight" if self.async_requests else "one request (latency)")

    def upload(self, *arrays, wait=True):
        return [np.ascontiguousarray(a, dtype=spec.dtype) for a, spec in zip(arrays, self.inputs)]

    def run(self, *inputs):
        result = self.request.infer(list(inputs), share_inputs=True, share_outputs=True)
        if self.profiling:
            self._count(self.request.profiling_info)
        return list(result.to_tuple())  # views of the request's output tensors, copied by download

    def download(self, outputs):
        return [np.array(out, copy=True) for out in outputs]

    # ---- throughput mode: N requests in flight (loop.py drives these) ----

    def run_async(self, inputs, tag=None, keep=True):  # on the next idle request (waits while all N are busy)
        self.queue.start_async(list(inputs), userdata=(tag, keep, inputs), share_inputs=True)

    def _finished(self, request, userdata):
        tag, keep, _ = userdata
        outputs = [request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))] if keep else None
        if self.profiling:
            self._count(request.profiling_info)
        self._done.append((tag, keep, outputs, float(request.latency)))

    def finished(self, wait=False):
        if wait and self.queue is not None:
            self.queue.wait_all()
        return super().finished(wait)

    # ---- profiling ----

    def _count(self, infos):
        """Add one run's performance counters (not the first's, which initialises lazily)."""
        with self._lock:
            self._seen += 1
            if self._seen == 1:
                return
            for info in infos:
                row = self._layers.setdefault(info.node_name, {"name": info.node_name, "type": info.node_type,
                                                               "exec_type": info.exec_type, "ms": 0.0})
                row["ms"] += info.real_time.total_seconds() * 1000.0

    def profile(self):
        runs = max(self._seen - 1, 0)
        return [dict(row, ms=row["ms"] / max(runs, 1)) for row in self._layers.values() if row["ms"] > 0], runs

    def close(self):
        self.queue = self.request = self.compiled = None


BACKEND = OpenVinoBackend
