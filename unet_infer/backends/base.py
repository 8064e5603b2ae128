"""The small interface every inference backend implements, and what each one declares about itself.

A backend module holds one ``Backend`` subclass, ``BACKEND``, and imports its framework only
inside its methods, so that reading the declarations (the driver does, through
``python3 -m unet_infer.backends``) never needs the framework installed. What a backend declares:

- ``name``, ``package`` (what ``pip install`` gives it; None: nothing on PyPI) and ``available()``;
- ``precisions``: what ``--precision`` may say for it, the first being its default;
- ``source``: what its models are built from: ``"pth"`` (it runs the checkpoint itself) or
  ``"onnx"`` (the simplified ONNX model, ``UNet_dynamic_sim.onnx``);
- ``quantized``: the precisions that need a quantised model, made from the simplified model and
  calibration images by its ``quantizer`` module (``UNet_int8.onnx`` style, ``quantized_name``);
- ``artefact(precision, bs)``: the file name of the model the runner loads for one batch size,
  made by its ``compile``; by default derived from ``quantized_name`` and ``model_suffixes``
  (``UNet_bs8.onnx``, ``UNet_int8_bs8.onnx``); a backend that runs the checkpoint returns None;
- ``options``: its own runner flags (``Option``), passed to ``load`` as keyword arguments.

The run itself: ``load``, then ``download(run(*upload(*arrays)))``: ``run`` is the compute,
``upload``/``download`` the H2D/D2H copies, timed apart by the runner.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cli import UserError
from ..formats import DEFAULT_SIZE


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (batch included) and numpy dtype of one model input."""

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

    @property
    def flags(self):
        return [f"--{self.dest}", f"--{self.dest.replace('_', '-')}"] if "_" in self.dest else [f"--{self.dest}"]

    def is_set(self, value):
        return value not in (None, False) and value != self.default


class Backend:
    """One inference engine; see the module notes for what a subclass declares."""

    name = ""
    package = None
    precisions = ("fp32",)
    source = "onnx"
    quantized = ()
    quantized_name = None
    quantizer = None  # the module that quantises for it, by name (e.g. "unet_infer.quantize.onnxruntime")
    model_suffixes = (".onnx",)
    options = ()
    external = False  # True: the backend is another program (see ``run_external``)
    async_upload = False  # True: upload(k + 1, wait=False) before run(k) overlaps the copy with compute
    async_requests = 0  # N > 0 once loaded in throughput mode: run_async/finished keep N runs in flight

    # ---- declarations (class level, no framework needed) ----

    @classmethod
    def default_precision(cls):
        return cls.precisions[0]

    @classmethod
    def check_precision(cls, precision):
        """``precision`` or the default; one this backend does not take is a :class:`UserError`."""
        if precision is None:
            return cls.default_precision()
        if precision not in cls.precisions:
            raise UserError(f"precision {precision} is not available on the {cls.name} backend "
                            f"(it takes {', '.join(cls.precisions)})")
        return precision

    @classmethod
    def artefact(cls, precision, batchsize):
        """File name of the model the runner loads for ``batchsize`` (None: the checkpoint itself):
        the model it is compiled from, ``UNet`` or ``quantized_name``'s stem, with ``_bs<N>`` and the
        backend's first model suffix (``UNet_bs8.onnx``, ``UNet_int8_bs8.xml``, ``UNet_bs8.om``)."""
        stem = Path(cls.quantized_name).stem if precision in cls.quantized else "UNet"
        return f"{stem}_bs{batchsize}{cls.model_suffixes[0]}"

    @classmethod
    def available(cls):
        """``(True, "")`` when this machine can run the backend, else ``(False, what to install)``."""
        import importlib.util
        if cls.package and importlib.util.find_spec(cls.package.replace("-", "_")) is None:
            return False, f"the {cls.name} backend needs the {cls.package} package: pip install {cls.package}"
        return True, ""

    @classmethod
    def compile(cls, src, dst, batchsize, threads=None, size=DEFAULT_SIZE, check=True, chip=None):
        """Build ``dst`` (``artefact``) from the simplified model ``src`` (or its quantised form);
        ``chip``: the target of a backend that compiles for one (atc's SoC)."""
        raise UserError(f"the {cls.name} backend has no compile step")

    @classmethod
    def model_batchsize(cls, model_path):
        """The batch size a load of ``model_path`` without ``--batchsize`` runs (``resolve_batchsize``):
        the model's fixed batch, else 1; read from the file, nothing compiled. Here 1: a backend whose
        models fix no batch (the checkpoint's); one that reads model files says what they fix."""
        return 1

    @classmethod
    def quantize(cls, src, calib, dst, n_calib=16, size=None, threads=None):
        """Write the quantised model ``dst`` from ``src`` and the images of ``calib``; a report dict.

        The recipe is the module named by ``quantizer`` (its ``quantize_model``), imported by name
        when used: a quantiser needs its backend (to check the result), never the other way round."""
        if not cls.quantizer:
            raise UserError(f"the {cls.name} backend has no quantiser")
        import importlib
        recipe = importlib.import_module(cls.quantizer)
        return recipe.quantize_model(src, calib, dst, n_calib=n_calib, size=size, threads=threads)

    @staticmethod
    def has_gpu():
        """Whether this backend can run on GPUs here (else it runs on the CPU, one device only)."""
        return False

    # ---- a loaded model ----

    def __init__(self):
        self.inputs = []
        self.output_names = []
        self.batchsize = 1
        self.precision = "fp32"  # what the model computes in, as the summary reports it
        self.weights = None  # the checkpoint the model was made from (model.weights_id), when known

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE,
             **options):
        """Read the model; set ``inputs`` (TensorSpec per input, batch included), ``output_names``, ``batchsize``."""
        raise NotImplementedError

    @property
    def input_nbytes(self):
        return self.inputs[0].nbytes

    def device_name(self, device):
        """The device a run used, for the machine description: "cpu" or "cuda:N"."""
        return "cpu"

    def upload(self, *arrays, wait=True):
        """Host arrays -> what ``run`` takes (timed as H2D)."""
        return list(arrays)

    def run(self, *inputs):
        """One model run on uploaded inputs -> outputs in device form (the only part timed as compute)."""
        raise NotImplementedError

    def download(self, outputs):
        """Device outputs -> numpy arrays (timed as D2H)."""
        return [np.asarray(out) for out in outputs]

    def infer(self, *arrays):
        """Upload, run and download in one call: a list of numpy outputs."""
        return self.download(self.run(*self.upload(*arrays)))

    def profile(self):
        """Per-layer times of the runs so far, ``[{"name", "type", "ms"}]``, when ``load`` was asked
        to profile (``profile=True``); None when the backend cannot."""
        return None

    def close(self):
        """Release the model."""


def resolve_batchsize(model_batch, requested, model_path):
    """The batch to run: ``--batchsize`` (default 1) on a dynamic batch axis, else the model's own."""
    if model_batch is None:
        return requested or 1
    if requested is not None and requested != model_batch:
        from ..onnxfile import PINNED_HINT
        raise UserError(f"{model_path}: the model's batch size is fixed at {model_batch}; --batchsize {requested} "
                        f"conflicts with it{PINNED_HINT if model_batch == 1 else ''}")
    return model_batch
