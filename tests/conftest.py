"""Shared fixtures: a tiny Carvana-like data set written by the test itself.

- ``make_carvana(root, n=4, width=48, height=32)``: ``root/train/<id>_<NN>.jpg`` (smooth RGB
  JPEGs) and ``root/train_masks/<id>_<NN>_mask.gif`` (palette GIFs, index 1 = car, an ellipse).
- ``carvana``: ``make_carvana(tmp_path / "carvana")`` with the defaults.
- ``smooth_rgb(width, height, seed)``, ``ellipse_mask(width, height, seed)`` and
  ``write_mask_gif(path, mask)`` for tests that need their own files.

And the machine the suite plays, for what ``backend=auto`` picks (``backends.default_backend``):

- ``--cpu-flags="FLAGS"`` (or ``UNET_INFER_TEST_CPU_FLAGS="FLAGS"`` in the environment, a test hook of
  ``backends.cpu_flags``): these flags stand in for the CPU's, in the tests and in every process they
  start, e.g. ``--cpu-flags=avx2`` (an AVX2-only CPU: auto -> onnxruntime) or
  ``--cpu-flags="avx512_vnni amx_int8 amx_bf16 avx512_bf16"`` (auto -> openvino). Neither: the
  host's own flags. The header of the run says which, and what auto takes.
- ``play_cpu(flags)``: a fixture that sets them for one test (and the processes it starts).
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The stage scripts live at the repository root; make them importable from any cwd.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


TEST_CPU_FLAGS_ENV = "UNET_INFER_TEST_CPU_FLAGS"  # backends.TEST_CPU_FLAGS_ENV, without importing it here


def pytest_addoption(parser):
    parser.addoption("--cpu-flags", default=None, metavar="FLAGS",
                     help=f"CPU flags the suite plays (sets {TEST_CPU_FLAGS_ENV} for it and the processes it "
                          f"starts), e.g. --cpu-flags=avx2 (default: the host's own, or {TEST_CPU_FLAGS_ENV})")


def pytest_configure(config):
    flags = config.getoption("--cpu-flags")
    if flags is not None:
        os.environ[TEST_CPU_FLAGS_ENV] = flags


def pytest_report_header(config):
    from unet_infer.backends import auto_choice, forced_cpu_flags
    backend, precision, _ = auto_choice()
    forced = forced_cpu_flags()
    played = f"{TEST_CPU_FLAGS_ENV}={' '.join(sorted(forced))}" if forced is not None else "the host's"
    return f"cpu flags: {played}; backend=auto -> {backend} {precision}"


# The module fixtures that a whole run stands behind (a driver run, a local Ray or a cluster of Ray
# nodes, a gpu_check or benchmark run). The suite runs on two workers (pyproject.toml): the tests
# that use one of these run in one worker, one after the other in file order, so the fixture is made
# once; every other test goes to the worker that is free.
SHARED_FIXTURES = {"finished", "unscored", "ray_address", "driver_run", "cluster", "checked", "bench_runs"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the marks
def pytest_collection_modifyitems(items):
    for item in items:
        if SHARED_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture
def play_cpu(monkeypatch):
    """``play_cpu("avx2 fma")``: these flags stand in for the CPU's until the test ends, in this
    process and in the processes it starts (they inherit ``os.environ``)."""
    def play(flags):
        monkeypatch.setenv(TEST_CPU_FLAGS_ENV, flags)
    return play


def _smooth_rgb(width, height, seed=0):
    """A smooth random RGB image (uint8 H x W x 3): a few low-frequency waves per channel."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy = rng.uniform(0.5, 3.0, 2) * 2 * np.pi
        phase = rng.uniform(0, 2 * np.pi)
        channels.append(0.5 + 0.5 * np.sin(fx * x / width + fy * y / height + phase))
    return (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)


def _ellipse_mask(width, height, seed=0):
    """A bool H x W mask: a random ellipse, like a car in the middle of the frame."""
    rng = np.random.default_rng(seed + 1000)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height
    rx, ry = rng.uniform(0.2, 0.4) * width, rng.uniform(0.2, 0.4) * height
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _write_mask_gif(path, mask):
    """Save a bool mask as a Carvana-style palette GIF: index 0 black, index 1 (car) white."""
    img = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.asarray(mask, dtype=np.uint8).tobytes())
    img.putpalette([0, 0, 0, 255, 255, 255])
    img.save(path)
    return Path(path)


@dataclass
class Carvana:
    root: Path
    train: Path
    masks: Path
    stems: list = field(default_factory=list)

    def image(self, stem):
        return self.train / f"{stem}.jpg"

    def mask(self, stem):
        return self.masks / f"{stem}_mask.gif"


def _make_carvana(root, n=4, width=48, height=32):
    root = Path(root)
    data = Carvana(root, root / "train", root / "train_masks")
    data.train.mkdir(parents=True)
    data.masks.mkdir(parents=True)
    for i in range(n):
        stem = f"{i:012x}_{i % 16 + 1:02d}"
        Image.fromarray(_smooth_rgb(width, height, seed=i)).save(data.image(stem), quality=90)
        _write_mask_gif(data.mask(stem), _ellipse_mask(width, height, seed=i))
        data.stems.append(stem)
    return data


@pytest.fixture
def smooth_rgb():
    return _smooth_rgb


@pytest.fixture
def ellipse_mask():
    return _ellipse_mask


@pytest.fixture
def write_mask_gif():
    return _write_mask_gif


@pytest.fixture
def make_carvana():
    return _make_carvana


@pytest.fixture
def carvana(tmp_path):
    return _make_carvana(tmp_path / "carvana")
