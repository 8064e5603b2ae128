"""onnxruntime backend: the CPU provider, or TensorRT/CUDA first when this onnxruntime build has them."""

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from ..bench.batching import resolve_batchsize
from ..errors import UserError
from ..formats import DEFAULT_SIZE
from .base import Backend, TensorSpec

log = logging.getLogger(__name__)

OPTIMIZED_KEY = "unet_infer.optimized"
BATCHSIZE_KEY = "unet_infer.batchsize"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ORT_ERRORS = (ort_state.Fail, ort_state.InvalidArgument, ort_state.InvalidGraph, ort_state.InvalidProtobuf,
              ort_state.NoSuchFile, ort_state.NotImplemented, ort_state.RuntimeException)
DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
          "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}


def inspect_model(path):
    """(metadata_props, whether the graph is quantised) of an ONNX file, weights not loaded."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: model not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not an ONNX model ({_first_line(exc)})") from None
    quantized = any(node.op_type in QUANTIZED_OPS for node in model.graph.node)
    return {p.key: p.value for p in model.metadata_props}, quantized



def session_options(threads, optimize=True):
    """Sequential execution on ``threads`` intra-op threads, full graph optimisation unless done already."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or 0
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    return so


def _first_line(exc):
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _input_spec(arg, batchsize, size, path):
    """The shape of one input for a run: dynamic batch from ``batchsize``, dynamic H, W from ``size``."""
    if arg.type not in DTYPES:
        raise UserError(f"{path}: input {arg.name} has type {arg.type}, which the runner cannot feed")
    shape = [batchsize]
    for axis, dim in enumerate(arg.shape[1:], start=1):
        if isinstance(dim, int) and dim > 0:
            shape.append(dim)
        elif len(arg.shape) == 4 and axis >= 2:
            shape.append(size)
        else:
            raise UserError(f"{path}: input {arg.name} has a dynamic axis {axis} ({arg.shape}); "
                            f"fix it with python3 -m unet_infer.compile or onnxsim")
    return TensorSpec(arg.name, tuple(shape), np.dtype(DTYPES[arg.type]))


class OnnxRuntimeBackend(Backend):
    """An ``InferenceSession`` fed through io_binding, so that copies stay outside ``run``."""

    name = "onnxruntime"

    @staticmethod
    def has_gpu():
        return any(p in ort.get_available_providers() for p in GPU_PROVIDERS)

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE, **options):
        if precision != "fp32":
            raise UserError(f"--precision {precision}: the onnxruntime backend runs the model in its own "
                            f"precision; use the torch backend (a .pth model) for fp16/bf16")
        metadata, quantized = inspect_model(model_path)
        optimized = metadata.get(OPTIMIZED_KEY) == "1"
        self.precision = "int8" if quantized else "fp32"
        gpu = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()]
        providers = [(p, {"device_id": device}) for p in gpu] + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(model_path), session_options(threads, not optimized),
                                                providers=providers)
        except ORT_ERRORS as exc:
            raise UserError(f"{model_path}: onnxruntime cannot load it ({_first_line(exc)})") from None
        self.device = ("cuda", device) if self.session.get_providers()[0] in GPU_PROVIDERS else ("cpu", 0)
        args = self.session.get_inputs()
        first = args[0].shape[0] if args[0].shape else None
        model_batch = first if isinstance(first, int) and first > 0 else None
        self.batchsize = resolve_batchsize(model_batch, batchsize, model_path)
        self.inputs = [_input_spec(arg, self.batchsize, size, model_path) for arg in args]
        self.output_names = [out.name for out in self.session.get_outputs()]
        log.info("onnxruntime %s on %s, %s threads, graph %s", ort.__version__,
                 self.session.get_providers()[0], threads,
                 "optimised at compile time" if optimized else "optimised at load")

    def upload(self, *arrays):
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

    def close(self):
        self.session = None
