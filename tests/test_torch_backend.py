"""The torch backend's options: torch.compile, CUDA graphs (refused without CUDA), fp16/bf16, uploads.

The CUDA paths (pinned buffers, the copy stream, graph capture) need a GPU; the tests marked
``cuda`` run only where torch sees one.
"""

import time

import numpy as np
import pytest
import torch

from tiny_unet import varied_unet, skip_without_cpu_fp16
from unet_infer.backends.torch_backend import (CPU_COMPILE_MODE, CUDA_COMPILE_MODE, TorchBackend,
                                               compile_mode)
from unet_infer.cli import UserError
from unet_infer.export import relative_error

SIZE = 16
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def make_checkpoint(path, width=2):
    """A UNet with non-trivial BatchNorm (folded by the backend), saved as a state_dict."""
    model = varied_unet(width=width, affine=True)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("torch_backend") / "unet_w2.pth")


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(3).random((2, 3, SIZE, SIZE), dtype=np.float32)


def infer(checkpoint, batch, **options):
    backend = TorchBackend()
    backend.load(checkpoint, batchsize=len(batch), size=SIZE, threads=1, **options)
    try:
        (out,) = backend.infer(batch)
    finally:
        backend.close()
    return out


@pytest.fixture(scope="module")
def eager(checkpoint, batch):
    return infer(checkpoint, batch)


def test_compile_matches_eager_and_compiles_in_load(checkpoint, batch, eager):
    backend = TorchBackend()
    backend.load(checkpoint, batchsize=2, size=SIZE, threads=1, torch_compile=True)
    try:
        inputs = backend.upload(batch)
        start = time.perf_counter()
        (out,) = backend.download(backend.run(*inputs))
        first_run_s = time.perf_counter() - start
    finally:
        backend.close()
    assert out.shape == (2, 1, SIZE, SIZE) and out.dtype == np.float32
    assert relative_error(out, eager) <= 1e-4
    assert first_run_s < 2.0  # compiled in load, not in the first (timed) run


def test_cuda_graph_needs_cuda(checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="CUDA graphs need a CUDA device"):
        TorchBackend().load(checkpoint, size=SIZE, cuda_graph=True)


def test_compile_modes():
    assert compile_mode(False, cuda=True) is None and compile_mode(None, cuda=False) is None
    assert compile_mode(True, cuda=False) == CPU_COMPILE_MODE == "default"
    assert compile_mode(True, cuda=True) == CUDA_COMPILE_MODE == "max-autotune-no-cudagraphs"


def test_unknown_option_is_a_programming_error(checkpoint):
    with pytest.raises(TypeError, match="cuda_graphs"):
        TorchBackend().load(checkpoint, size=SIZE, cuda_graphs=True)


@pytest.mark.parametrize("precision, limit", [("bf16", 2e-2), ("fp16", 1e-2)])
def test_half_precisions_are_close_to_fp32(checkpoint, batch, eager, precision, limit):
    if precision == "fp16":
        skip_without_cpu_fp16()
    out = infer(checkpoint, batch, precision=precision)
    assert out.dtype == np.float32
    assert relative_error(out, eager) <= limit


def test_cpu_upload_is_synchronous_and_run_repeatable(checkpoint, batch, eager):
    backend = TorchBackend()
    backend.load(checkpoint, batchsize=2, size=SIZE, threads=1)
    try:
        assert backend.async_upload is False and backend.device_name() == "cpu"
        inputs = backend.upload(batch, wait=False)
        batch_copy = batch.copy()
        first = backend.download(backend.run(*inputs))[0]
        second = backend.download(backend.run(*inputs))[0]
    finally:
        backend.close()
    assert np.array_equal(first, second) and np.array_equal(first, eager)
    assert np.array_equal(batch, batch_copy)


@cuda
@pytest.mark.parametrize("options", [{}, {"cuda_graph": True}, {"torch_compile": True},
                                     {"torch_compile": True, "cuda_graph": True}])
def test_cuda_options_match_the_cpu(checkpoint, batch, eager, options):
    out = infer(checkpoint, batch, **options)
    assert relative_error(out, eager) <= 1e-2  # cuDNN runs fp32 convolutions in TF32 by default


@cuda
def test_cuda_uploads_ahead_overlap_and_keep_each_batch(checkpoint):
    """Upload batch k+1 (no wait) before running batch k: every output is its own batch's."""
    rng = np.random.default_rng(5)
    batches = [rng.random((2, 3, SIZE, SIZE), dtype=np.float32) for _ in range(5)]
    for options in ({}, {"cuda_graph": True}):
        backend = TorchBackend()
        backend.load(checkpoint, batchsize=2, size=SIZE, **options)
        try:
            assert backend.async_upload
            want = [backend.infer(b)[0] for b in batches]
            staged = backend.upload(batches[0], wait=False)
            got = []
            for k in range(len(batches)):
                following = backend.upload(batches[k + 1], wait=False) if k + 1 < len(batches) else None
                got.append(backend.download(backend.run(*staged))[0])
                staged = following
        finally:
            backend.close()
        for g, w in zip(got, want):
            assert np.array_equal(g, w)
