"""The small interface every inference backend implements, and what each one declares about itself.

A backend module holds one ``Backend`` subclass, ``BACKEND``, and imports its framework only inside
its methods, so that reading the declarations (the class attributes below) never needs it installed.
A run: ``load``, then ``download(run(*upload(*arrays)))``: ``run`` is the compute, ``upload`` and
``download`` the H2D/D2H copies, timed apart. A backend whose models another program runs (acl:
Huawei's ais_bench) is an :class:`ExternalBackend`: no ``load``; the runner hands its command over.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cli import UserError, flag
from ..formats import DEFAULT_SIZE

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TensorSpec:  # one model input, its shape with the batch
    name: str
    shape: tuple
    dtype: np.dtype

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Option:
    """A backend's own runner flag: ``--flag`` (underscore and dash spellings), stored as ``dest``."""

    dest: str
    help: str
    type: object = None  # None: a store_true flag
    default: object = None

    def add_to(self, parser):
        if self.type is None:
            parser.add_argument(*flag(self.dest), dest=self.dest, action="store_true", help=self.help)
        else:
            parser.add_argument(*flag(self.dest), dest=self.dest, type=self.type, default=self.default, help=self.help)


class Backend:
    """One inference engine (see the module notes)."""

    name = ""
    package = None  # what pip install gives it; None: nothing on PyPI
    precisions = ("fp32",)  # what --precision may say for it, its default first
    source = "onnx"  # what its models are built from: "pth" (the checkpoint) or "onnx" (the simplified model)
    quantized = ()  # the precisions that need a quantised model (its name: quantized_name)
    quantized_name = None
    quantizer = None  # the module whose quantize_model quantises for it (e.g. "unet_infer.quantize.openvino")
    model_suffixes = (".onnx",)
    options = ()  # its own runner flags (Option), passed to load as keyword arguments
    compile_options = ()  # its own flags of python3 -m unet_infer.compile, passed to ``compile``
    can_profile = False  # True: load(profile=True) records per-layer times, profile() gives them
    async_upload = False  # True: upload(k + 1, wait=False) before run(k) overlaps the copy with compute
    async_requests = 0  # N > 0 once loaded in throughput mode: run_async/finished keep N runs in flight
    accelerator = None  # the device its runs use, in words, where it is not this machine's (acl: "Ascend NPU")
    native_flags = {}  # precision -> CPU flags, one of which it needs to run that precision fast on a CPU (backends.slow_path)

    @classmethod
    def check_precision(cls, precision):
        """``precision`` or the default; one this backend does not take is a UserError."""
        if precision is None:
            return cls.precisions[0]
        if precision not in cls.precisions:
            raise UserError(f"precision {precision} is not available on the {cls.name} backend "
                            f"(it takes {', '.join(cls.precisions)})")
        return precision

    @classmethod
    def artefact(cls, precision, batchsize):
        """The model file the runner loads for ``batchsize`` (None: the checkpoint itself)."""
        stem = Path(cls.quantized_name).stem if precision in cls.quantized else "UNet"
        return f"{stem}_bs{batchsize}{cls.model_suffixes[0]}"

    @classmethod
    def available(cls):
        """``(True, "")``, or ``(False, what to install)``."""
        import importlib.util
        if cls.package and importlib.util.find_spec(cls.package.replace("-", "_")) is None:
            return False, f"the {cls.name} backend needs the {cls.package} package: pip install {cls.package}"
        return True, ""

    @classmethod
    def compile(cls, src, dst, batchsize, threads=None, size=DEFAULT_SIZE, check=True, **options):
        """Build ``dst`` (``artefact``) from the simplified model ``src``; ``options``: its ``compile_options``."""
        raise UserError(f"the {cls.name} backend has no compile step")

    @classmethod
    def fixed_batchsize(cls, model_path):
        return None  # the batch size the model file fixes; None: dynamic

    @staticmethod
    def has_gpu():
        return False

    # ---- a loaded model ----

    def __init__(self):
        self.inputs = []
        self.output_names = []
        self.batchsize = 1
        self.precision = "fp32"  # what the model computes in, as the summary reports it
        self.weights = None  # the checkpoint the model was made from (weights.weights_id), when known
        self._done = deque()  # the runs of run_async not yet handed out by finished

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE,
             profile=False, **options):
        """Read the model; set ``inputs`` (a TensorSpec each), ``output_names``, ``batchsize``, ``precision``."""
        raise NotImplementedError

    def check_quantized(self, model_path, precision, quantized, batchsize):
        """A ``precision`` that the model's quantisation (or its absence) contradicts is a UserError."""
        if precision is None or (precision in self.quantized) == quantized:
            return
        if quantized:
            raise UserError(f"{model_path}: --precision {precision}, but the model computes in int8 (quantised); "
                            f"give the fp32 model ({self.artefact('fp32', batchsize or 1)})")
        raise UserError(f"{model_path}: --precision {precision}, but the model computes in fp32; make an INT8 model "
                        f"with python3 -m unet_infer.quantize --backend {self.name}")

    def device_name(self):
        return "cpu"  # or "cuda:N", for the machine description

    def upload(self, *arrays, wait=True):  # host arrays -> what run takes (H2D)
        return list(arrays)

    def run(self, *inputs):  # uploaded inputs -> device outputs: the compute
        raise NotImplementedError

    def download(self, outputs):  # device outputs -> numpy arrays (D2H)
        return [np.asarray(out) for out in outputs]

    def infer(self, *arrays):
        return self.download(self.run(*self.upload(*arrays)))

    def run_async(self, inputs, tag=None, keep=True):
        """Start one run (here: done at once); :meth:`finished` gives ``(tag, keep, outputs if keep, ms)``."""
        start = time.perf_counter()
        outputs = self.run(*inputs)
        self._done.append((tag, keep, outputs if keep else None, (time.perf_counter() - start) * 1000.0))

    def finished(self, wait=False):
        """The runs done since the last call (``wait``: all of them, once done)."""
        done = []
        while self._done:  # popleft: safe against a request's callback appending meanwhile
            done.append(self._done.popleft())
        return done

    def profile(self):
        """``(per-layer times of the runs so far, [{"name", "type", "exec_type", "ms"}], the runs they average)``."""
        raise NotImplementedError  # only where can_profile

    def close(self):
        pass


class ExternalBackend(Backend):
    """A backend whose models ``program`` runs (``run_external``); ``backends.in_process`` refuses it."""

    program = ""  # what runs its models, in words (e.g. "Huawei's ais_bench")

    @classmethod
    def run_external(cls, argv):
        """Run ``program`` with the runner's ``argv``; its exit status."""
        raise NotImplementedError


def run_shape(dims, batchsize, size, source, name):
    """An input's shape: ``batchsize``, then ``dims`` (None: dynamic) with ``size`` for a 4-D input's H, W."""
    shape = [batchsize]
    for axis, dim in enumerate(dims[1:], start=1):
        if dim is None and not (len(dims) == 4 and axis >= 2):
            raise UserError(f"{source}: input {name} has a dynamic axis {axis} ({list(dims)}); "
                            f"fix it with python3 -m unet_infer.compile or onnxsim")
        shape.append(size if dim is None else dim)
    return tuple(shape)


def check_outputs(source, batchsize, specs, names, run, batch_check=None):
    """A compiled model's check: ``run`` on zeros of ``specs`` gives outputs of the batch ``batchsize``;
    a re-batched model's, on ``batch_check``'s random batch, agree with the batch-1 model's."""
    arrays = (batch_check.inputs([(spec.shape, spec.dtype) for spec in specs]) if batch_check
              else [np.zeros(spec.shape, spec.dtype) for spec in specs])
    outputs = run(arrays)
    for name, out in zip(names, outputs):
        if out.ndim == 0 or out.shape[0] != batchsize:
            raise UserError(f"{source}: output {name} has shape {out.shape}, expected batch {batchsize}")
        log.info("checked: output %s %s", name, out.shape)
    if batch_check:
        batch_check.verify(arrays, outputs)


def resolve_batchsize(model_batch, requested, model_path):
    """``--batchsize`` (default 1) on a dynamic batch axis, else the model's own."""
    if model_batch is None:
        return requested or 1
    if requested is not None and requested != model_batch:
        from ..onnxfile import PINNED_HINT
        raise UserError(f"{model_path}: the model's batch size is fixed at {model_batch}; --batchsize {requested} "
                        f"conflicts with it{PINNED_HINT if model_batch == 1 else ''}")
    return model_batch
