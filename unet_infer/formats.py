"""The raw binary files between stages (read and written here), atomic writes, file lists and names
(a name a user gives for a file inside a folder stays inside it: :func:`inside`).

- Preprocessed image: raw float32 CHW RGB in [0, 1], ``<stem>.bin``, 3*S*S*4 bytes (S = 572).
- Model output: raw float32 logits, C x S x S per image (C = 1, or 2 for milesial master
  checkpoints), ``<stem>_0.bin`` as the runner writes it, ``<stem>.bin`` after json_parse (the
  runner's other output formats, .npy and text, are ``bench.files``').
- Every file of the package is written atomically (``atomic_path``): a temporary name in the same
  folder, then a rename, so a killed run never leaves a half-written file that a later stage
  would take as whole.
"""

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .cli import UserError

DEFAULT_SIZE = 572
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
INPUT_SUFFIXES = (".bin", ".npy")


def natural_key(name):
    """Sort key that orders ``img2`` before ``img10`` (ais_bench reads inputs in this order)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(name))]


def bin_nbytes(channels, size=DEFAULT_SIZE):
    """Bytes of one C x S x S float32 file: a preprocessed image (C = 3) or a model output (C = 1 or 2)."""
    return channels * size * size * 4


@contextmanager
def atomic_path(path):
    """Yield a temporary file name beside ``path``; renamed to ``path`` on success, removed on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # a new file's mode, not mkstemp's 0600
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def write_bin(path, array):
    """Write ``array`` as raw little-endian float32 (``ndarray.tofile`` layout), atomically."""
    arr = np.ascontiguousarray(array, dtype="<f4")
    atomic_write_bytes(path, arr.tobytes())


def read_bin(path, shape=None):
    """Read a raw float32 file (of ``shape``); a file of the wrong size is a UserError naming it."""
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    if shape is not None and nbytes != 4 * int(np.prod(shape)):
        raise UserError(f"{path}: {nbytes} bytes, expected {4 * int(np.prod(shape))}")
    if nbytes % 4:
        raise UserError(f"{path}: {nbytes} bytes is not a whole number of float32 values")
    arr = np.fromfile(path, dtype="<f4")
    return arr if shape is None else arr.reshape(shape)


def read_array(path):
    """Read a runner input: ``.npy`` keeps its dtype and shape, anything else is raw float32."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: not a readable .npy file ({exc})") from None
    return read_bin(path)


def inside(folder, name):
    """``folder/name`` if it stays inside ``folder`` (no ``..``, no absolute path, no link out), else None."""
    folder = Path(folder).resolve()
    if not name or os.path.isabs(name) or Path(name).name != name or name in (".", ".."):
        return None
    candidate = folder / name
    try:
        if candidate.resolve().parent != folder:
            return None
    except OSError:
        return None
    return candidate


def list_files(folder, suffixes, what="input"):
    """Files in ``folder`` (not recursive) whose suffix is in ``suffixes``, natural order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: {what} folder not found")
    return [p for p in sorted(folder.iterdir(), key=natural_key) if p.is_file() and p.suffix.lower() in suffixes]
