"""The runner's file flow, by ais_bench's rules: input files and folders -> batches, outputs -> files.

Inputs (``list_inputs``): each ``--input`` folder's .bin/.npy files in natural order, one folder
per model input, or a comma list of files (and folders) for a one-input model; files per batch =
model input bytes / the files' bytes (must divide exactly); a short last batch is padded with copies
of its first file, and padded slots write nothing. Outputs: ``<stem of the input>_<k>.<bin|npy|txt>``.
"""

import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from ..cli import UserError, os_error
from ..formats import INPUT_SUFFIXES, atomic_write_bytes, list_files, read_array

OUTFMT_SUFFIX = {"BIN": "bin", "NPY": "npy", "TXT": "txt"}


@dataclass(frozen=True)
class Batch:
    """One model run: ``files`` holds file indices, the slots from ``real`` on are padding."""

    index: int
    files: tuple
    real: int


def plan_batches(n_files, per_batch):
    """Consecutive batches of ``per_batch`` files; a short last batch is padded with its own first file."""
    batches = []
    for index, start in enumerate(range(0, n_files, per_batch)):
        real = min(per_batch, n_files - start)
        files = tuple(range(start, start + real)) + (start,) * (per_batch - real)
        batches.append(Batch(index, files, real))
    return batches


def output_name(input_path, k, outfmt):  # where output k of this input goes
    return f"{PurePath(input_path).stem}_{k}.{OUTFMT_SUFFIX[outfmt]}"


def list_inputs(spec):
    """The input files of ``--input``, one list per model input (see the module notes)."""
    parts = [part for part in str(spec).split(",") if part]
    lists = []
    for part in parts:
        path = Path(part)
        if not path.exists():
            raise UserError(f"{part}: input file or folder not found")
        if path.is_file() and path.suffix.lower() not in INPUT_SUFFIXES:
            raise UserError(f"{part}: expected a .bin or .npy input file, or a folder of them")
        lists.append([path] if path.is_file() else list_files(part, INPUT_SUFFIXES))
        if not lists[-1]:
            raise UserError(f"{part}: no .bin or .npy files in the input folder")
    if any(Path(part).is_file() for part in parts):  # files: all of them one input's, as given
        return [[path for files in lists for path in files]]
    if any(len(files) != len(lists[0]) for files in lists):
        raise UserError(f"--input: the folders hold {[len(f) for f in lists]} files; they must hold as many each")
    return lists


def data_nbytes(path):
    """Bytes of data in an input file: the array's for .npy, the file's for raw .bin."""
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False).nbytes
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: not a readable .npy file ({exc})") from None
    return path.stat().st_size


def plan_files_per_batch(inputs, specs):
    """Files per batch, from the commonest size of input 0's files; a file of another size is named."""
    if len(inputs) != len(specs):
        raise UserError(f"--input gives {len(inputs)} list(s) of files; the model has {len(specs)} input(s): "
                        f"{', '.join(s.name for s in specs)} (give one folder per input, comma-separated)")
    per_batch = None
    for files, spec in zip(inputs, specs):
        sizes = {path: data_nbytes(path) for path in files}
        if per_batch is None:
            counts = Counter(sizes.values())
            common = max(counts, key=lambda n: (counts[n], -n))
            if common <= 0 or spec.nbytes % common:
                raise UserError(f"{next(p for p, n in sizes.items() if n == common)}: {common} bytes, expected "
                                f"{spec.nbytes} bytes (one batch of the model input) or an exact fraction of it")
            per_batch = spec.nbytes // common
        share = spec.nbytes // per_batch
        for path, nbytes in sizes.items():
            if nbytes != share:
                raise UserError(f"{path}: {nbytes} bytes, expected {share} ({per_batch} file(s) per batch "
                                f"of input {spec.name} {spec.shape})")
    return per_batch


def read_batch(paths, spec, per_batch):
    """One batch of one input from ``per_batch`` files, their bytes laid end to end (as ais_bench does)."""
    batch = np.empty(spec.shape, spec.dtype)
    flat = batch.reshape(-1).view(np.uint8)
    share = spec.nbytes // per_batch
    for slot, path in enumerate(paths):
        flat[slot * share:(slot + 1) * share] = np.ascontiguousarray(read_array(path)).reshape(-1).view(np.uint8)
    return batch


def file_feeds(batches, inputs, specs, per_batch, timings):
    """``(arrays, batch)`` per batch, read when the loop asks for it (the time goes to read_ms)."""
    for batch in batches:
        start = time.perf_counter()
        arrays = [read_batch([files[i] for i in batch.files], spec, per_batch)
                  for files, spec in zip(inputs, specs)]
        timings.add("read_ms", start)
        yield arrays, batch


def pure_data(spec, kind, rng):
    """Pure-inference data: zeros, or uniform [0, 1) floats / random bytes for other types."""
    if kind == "zero":
        return np.zeros(spec.shape, spec.dtype)
    if np.issubdtype(spec.dtype, np.floating):
        return rng.random(spec.shape).astype(spec.dtype)
    return rng.integers(0, 256, spec.nbytes, dtype=np.uint8).view(spec.dtype).reshape(spec.shape)


def encode(array, outfmt):
    """The bytes of an output file: raw (BIN, like ``tofile``), .npy, or ais_bench's text rows."""
    if outfmt == "NPY":
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()
    if outfmt == "TXT":
        rows = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
        text = io.StringIO()
        np.savetxt(text, rows, fmt="%f" if np.issubdtype(rows.dtype, np.floating) else "%d", newline=" \n")
        return text.getvalue().encode()
    return np.ascontiguousarray(array).tobytes()


def split_output(output, per_batch, k):
    """One piece per input file along axis 0 (the whole output when a file fills the batch)."""
    if output.ndim == 0 or output.shape[0] % per_batch:
        raise UserError(f"output {k} has shape {output.shape}: axis 0 does not split into {per_batch} files")
    return np.split(output, per_batch, axis=0)


class OutputWriter:
    """The sink of the file flow: writes the real slots' outputs and collects the filesinfo."""

    def __init__(self, inputs, per_batch, out_dir, outfmt, timings):
        self.inputs, self.per_batch, self.out_dir, self.outfmt = inputs, per_batch, out_dir, outfmt
        self.timings = timings
        self.filesinfo = {}

    def __call__(self, batch, outputs):
        if self.out_dir is None:
            return
        start = time.perf_counter()
        pieces = [split_output(out, self.per_batch, k) for k, out in enumerate(outputs)]
        for slot in range(batch.real):
            infiles = [files[batch.files[slot]] for files in self.inputs]
            outfiles = [self.out_dir / output_name(infiles[0], k, self.outfmt) for k in range(len(pieces))]
            for path, piece in zip(outfiles, pieces):
                try:
                    atomic_write_bytes(path, encode(piece[slot], self.outfmt))
                except OSError as exc:
                    raise os_error(path, exc) from None
            self.filesinfo[batch.index * self.per_batch + slot] = {"infiles": infiles, "outfiles": outfiles}
        self.timings.add("write_ms", start)
