"""PyTorch backend: a UNet checkpoint (.pth) on the CPU or a CUDA GPU, in fp32, fp16 or bf16.

The model runs in eval mode with its BatchNorms folded into the convolutions, channels_last,
under ``torch.inference_mode``. On a CUDA GPU, in addition: cuDNN benchmark mode; inputs go
through pinned host buffers, allocated once, copied on a copy stream of their own, the compute
waiting for the copy on the GPU (an event), so that a caller that uploads batch k+1
(``wait=False``) before it runs batch k overlaps that copy with the compute (``async_upload``);
``run`` waits for its own compute only, so its time is the model's compute time.

- ``--torch_compile``: ``torch.compile(dynamic=False)`` (``max-autotune-no-cudagraphs`` on CUDA,
  ``default`` on the CPU), compiled during ``load`` so that no timed run pays for it.
- ``--cuda_graph`` (CUDA only, fixed batch size): after warm-up runs on a side stream, one model
  run is captured as a CUDA graph on a static input, which ``run`` fills and replays; its outputs
  are valid until the next ``run``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..cli import UserError
from ..formats import DEFAULT_SIZE
from .base import Backend, Option, TensorSpec, resolve_batchsize

if TYPE_CHECKING:  # the annotations only; torch is imported where the backend runs
    import torch

log = logging.getLogger(__name__)

DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
CUDA_COMPILE_MODE = "max-autotune-no-cudagraphs"  # CUDA graphs, when wanted, are our own (cuda_graph)
CPU_COMPILE_MODE = "default"
WARMUP_RUNS = 3  # before a capture: cuDNN benchmarking, autotuning and lazy init all done


def fold_batchnorm(model):
    """Fold each eval-mode BatchNorm2d that follows a Conv2d in an nn.Sequential into that conv."""
    import torch.nn as nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d):
                seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return model


def compile_mode(option, cuda):
    if not option:
        return None
    return CUDA_COMPILE_MODE if cuda else CPU_COMPILE_MODE


@dataclass(eq=False)
class _Slot:
    """One input's buffers: pinned host and device staging (fp32), device input (dtype, channels_last);
    ``copied``/``consumed``: events after the copy out of ``host`` / a run's read of ``device``."""

    host: torch.Tensor
    stage: torch.Tensor
    device: torch.Tensor
    copied: torch.cuda.Event
    consumed: torch.cuda.Event
    pending: bool = False  # uploaded, not run yet


class TorchBackend(Backend):

    name = "torch"
    package = "torch"
    precisions = ("fp32", "fp16", "bf16")
    source = "pth"
    model_suffixes = (".pth", ".pt")
    native_flags = {"fp16": ("avx512_fp16", "amx_fp16"), "bf16": ("avx512_bf16", "amx_bf16")}  # oneDNN's
    options = (
        Option("torch_compile", "torch backend: torch.compile the model (compiled as it loads, before the "
                                "first batch)"),
        Option("cuda_graph", "torch backend on CUDA: replay the model as a CUDA graph"),
    )

    @classmethod
    def artefact(cls, precision, batchsize):
        return None  # the checkpoint itself

    def __init__(self):
        super().__init__()
        self._slots = {}  # (input index, shape) -> deque of _Slot
        self._graph = self._static_in = self._static_out = None

    @staticmethod
    def has_gpu():
        import torch
        return torch.cuda.is_available()

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=DEFAULT_SIZE,
             profile=False, torch_compile=False, cuda_graph=False):
        import torch

        from ..weights import weights_id
        from ..model import load_unet
        precision = self.check_precision(precision)
        cuda_graph = bool(cuda_graph)
        cuda = torch.cuda.is_available()
        if cuda_graph and not cuda:
            raise UserError("CUDA graphs need a CUDA device; torch sees none here (leave --cuda_graph off)")
        mode = compile_mode(torch_compile, cuda)
        model, layout = load_unet(model_path)
        self.weights = weights_id(model_path)
        if cuda:
            if device >= torch.cuda.device_count():
                raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
            self.device = torch.device("cuda", device)
            torch.cuda.set_device(self.device)
            torch.backends.cudnn.benchmark = True
            self.copy_stream = torch.cuda.Stream(self.device)
            self.async_upload = True
        else:
            self.device = torch.device("cpu")
            if threads:
                torch.set_num_threads(threads)
        self.dtype = getattr(torch, DTYPE_NAMES[precision])
        self.precision = precision
        self.model = fold_batchnorm(model).to(self.device, self.dtype, memory_format=torch.channels_last)
        self.forward = torch.compile(self.model, mode=mode, dynamic=False) if mode else self.model
        self.batchsize = resolve_batchsize(None, batchsize, model_path)
        self.inputs = [TensorSpec("actual_input_1", (self.batchsize, layout.n_channels, size, size),
                                  np.dtype(np.float32))]
        self.output_names = ["output1"]
        if mode or cuda_graph:
            self._prepare(cuda_graph)
        log.info("torch %s on %s, %s, %s threads, %s%s%s", torch.__version__, self.device, precision,
                 torch.get_num_threads(), layout.describe(), f", torch.compile mode {mode}" if mode else "",
                 ", CUDA graph" if cuda_graph else "")

    def _prepare(self, cuda_graph):
        """Untimed, on zeros: compile (the first runs) and capture the CUDA graph."""
        import torch
        static = torch.empty(self.inputs[0].shape, dtype=self.dtype, device=self.device,
                             memory_format=torch.channels_last).zero_()
        with torch.inference_mode():
            if self.device.type != "cuda":
                self.forward(static)
                return
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(WARMUP_RUNS):
                    self.forward(static)
            torch.cuda.current_stream(self.device).wait_stream(side)
            if cuda_graph:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = self.forward(static)
                self._graph, self._static_in, self._static_out = graph, static, out
            torch.cuda.synchronize(self.device)

    def device_name(self):
        return str(self.device)

    def _free_slot(self, index, shape):
        """A slot for input ``index`` of ``shape`` that no queued run still needs."""
        import torch
        slots = self._slots.setdefault((index, shape), deque())
        for _ in range(len(slots)):
            slot = slots.popleft()
            slots.append(slot)
            if not slot.pending:
                return slot
        # none free (first use, or the caller uploads further ahead than the slots allow): add one
        slot = _Slot(host=torch.empty(shape, dtype=torch.float32, pin_memory=True),
                     stage=torch.empty(shape, dtype=torch.float32, device=self.device),
                     device=torch.empty(shape, dtype=self.dtype, device=self.device,
                                        memory_format=torch.channels_last),
                     copied=torch.cuda.Event(), consumed=torch.cuda.Event())
        slots.append(slot)
        return slot

    def _upload_cuda(self, index, array, wait):
        """Host array -> pinned buffer -> (copy stream) device buffer; ``wait``: until copied."""
        import torch
        slot = self._free_slot(index, tuple(array.shape))
        slot.copied.synchronize()  # the last copy out of this pinned buffer has finished
        slot.host.copy_(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(slot.consumed)  # the last run that read slot.device is over
            slot.stage.copy_(slot.host, non_blocking=True)
            slot.device.copy_(slot.stage)  # to the compute dtype and channels_last, on the copy stream
            slot.copied.record(self.copy_stream)
        slot.pending = True
        if wait:
            slot.copied.synchronize()
        return slot

    def upload(self, *arrays, wait=True):
        import torch
        if self.device.type == "cuda":
            return [self._upload_cuda(i, array, wait) for i, array in enumerate(arrays)]
        return [torch.from_numpy(array).to(self.dtype).contiguous(memory_format=torch.channels_last)
                for array in arrays]

    def _run_cuda(self, slots):
        import torch
        stream = torch.cuda.current_stream(self.device)
        for slot in slots:
            stream.wait_event(slot.copied)  # on the GPU: the compute starts when the copy is done
        tensors = [slot.device for slot in slots]
        with torch.inference_mode():
            if self._graph is not None:
                if tensors[0].shape != self._static_in.shape:
                    raise ValueError(f"the CUDA graph was captured for {tuple(self._static_in.shape)}, "
                                     f"got {tuple(tensors[0].shape)}")
                self._static_in.copy_(tensors[0])
                self._graph.replay()
                out = self._static_out
            else:
                out = self.forward(*tensors)
        for slot in slots:
            slot.consumed.record(stream)
            slot.pending = False
        stream.synchronize()  # the compute only: a copy queued for the next batch may go on
        return [out]

    def run(self, *inputs):
        import torch
        if self.device.type == "cuda":
            return self._run_cuda(inputs)
        with torch.inference_mode():
            out = self.forward(*inputs)
        return [out]

    def download(self, outputs):
        return [out.float().cpu().contiguous().numpy() for out in outputs]

    def close(self):
        import torch
        self.model = self.forward = None
        self._graph = self._static_in = self._static_out = None
        self._slots = {}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()


BACKEND = TorchBackend
