"""The small interface every inference backend implements."""

from dataclasses import dataclass

import numpy as np

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


class Backend:
    """``load``, then ``download(run(*upload(*arrays)))``: ``run`` is the compute, upload/download the H2D/D2H."""

    name = ""
    external = False  # True: the backend is another program (see ``run_external``)

    def __init__(self):
        self.inputs = []
        self.output_names = []
        self.batchsize = 1
        self.precision = "fp32"  # what the model computes in, as the summary reports it

    @staticmethod
    def has_gpu():
        """Whether this backend can run on GPUs here (else it runs on the CPU, one device only)."""
        return False

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE, **options):
        """Read the model; set ``inputs`` (TensorSpec per input, batch included), ``output_names``, ``batchsize``."""
        raise NotImplementedError

    @property
    def input_shape(self):
        return self.inputs[0].shape

    @property
    def input_dtype(self):
        return self.inputs[0].dtype

    @property
    def input_nbytes(self):
        return self.inputs[0].nbytes

    def device_name(self, device):
        """The device a run used, for the machine description: "cpu" or "cuda:N"."""
        return "cpu"

    def upload(self, *arrays):
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

    def close(self):
        """Release the model."""
