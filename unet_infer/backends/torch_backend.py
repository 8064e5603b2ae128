"""PyTorch backend: a UNet checkpoint (.pth) on the CPU or a CUDA GPU, in fp32, fp16 or bf16."""

import logging

import numpy as np
import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..bench.batching import resolve_batchsize
from ..errors import UserError
from ..formats import DEFAULT_SIZE
from ..model import load_unet
from .base import Backend, TensorSpec

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def fold_batchnorm(model):
    """Fold each eval-mode BatchNorm2d that follows a Conv2d inside an nn.Sequential into that conv."""
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


class TorchBackend(Backend):
    """The UNet in eval mode, channels_last, under ``torch.inference_mode``; CUDA runs are synchronised."""

    name = "torch"

    @staticmethod
    def has_gpu():
        return torch.cuda.is_available()

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE, **options):
        model, layout = load_unet(model_path)
        if torch.cuda.is_available():
            if device >= torch.cuda.device_count():
                raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
            self.device = torch.device("cuda", device)
            torch.backends.cudnn.benchmark = True
        else:
            self.device = torch.device("cpu")
            if threads:
                torch.set_num_threads(threads)
        self.dtype = DTYPES[precision]
        self.precision = precision
        self.model = fold_batchnorm(model).to(self.device, self.dtype, memory_format=torch.channels_last)
        self.batchsize = resolve_batchsize(None, batchsize, model_path)
        self.inputs = [TensorSpec("actual_input_1", (self.batchsize, layout.n_channels, size, size),
                                  np.dtype(np.float32))]
        self.output_names = ["output1"]
        log.info("torch %s on %s, %s, %s threads, %s", torch.__version__, self.device, precision,
                 torch.get_num_threads(), layout.describe())

    def device_name(self, device):
        return str(self.device)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def upload(self, *arrays):
        tensors = []
        for array in arrays:
            x = torch.from_numpy(array)
            if self.device.type == "cuda":
                x = x.pin_memory().to(self.device, non_blocking=True)
            tensors.append(x.to(self.dtype).contiguous(memory_format=torch.channels_last))
        self._sync()
        return tensors

    def run(self, *inputs):
        with torch.inference_mode():
            out = self.model(*inputs)
        self._sync()
        return [out]

    def download(self, outputs):
        return [out.float().cpu().contiguous().numpy() for out in outputs]

    def close(self):
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
