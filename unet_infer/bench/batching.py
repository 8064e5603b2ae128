"""How ais_bench cuts a list of input files into batches and names what comes out (pure functions)."""

from dataclasses import dataclass
from pathlib import PurePath

from ..cli import UserError

OUTFMT_SUFFIX = {"BIN": "bin", "NPY": "npy", "TXT": "txt"}


@dataclass(frozen=True)
class Batch:
    """One model run: ``files`` holds file indices, the slots from ``real`` on are padding."""

    index: int
    files: tuple
    real: int

    def samples(self):
        """``(sample_id, slot)`` of the real slots (padding has no sample): id = index * per_batch + slot."""
        return [(self.index * len(self.files) + slot, slot) for slot in range(self.real)]


def files_per_batch(batch_nbytes, file_nbytes, path):
    """Input files that fill one batch of the model's input; a size that does not divide is a UserError."""
    if file_nbytes <= 0 or batch_nbytes % file_nbytes:
        raise UserError(f"{path}: {file_nbytes} bytes, expected {batch_nbytes} bytes (one batch of the "
                        f"model input) or an exact fraction of it")
    return batch_nbytes // file_nbytes


def plan_batches(n_files, per_batch):
    """Consecutive batches of ``per_batch`` files; a short last batch is padded with its own first file."""
    batches = []
    for index, start in enumerate(range(0, n_files, per_batch)):
        real = min(per_batch, n_files - start)
        files = tuple(range(start, start + real)) + (start,) * (per_batch - real)
        batches.append(Batch(index, files, real))
    return batches


def output_name(input_path, k, outfmt):
    """``<stem of the input file>_<k>.<bin|npy|txt>``: the file that output ``k`` of this input goes to."""
    return f"{PurePath(input_path).stem}_{k}.{OUTFMT_SUFFIX[outfmt]}"


def first_clash(paths, outfmt):
    """The first two input paths whose outputs would share a name, or None."""
    seen = {}
    for path in paths:
        name = output_name(path, 0, outfmt)
        if name in seen:
            return seen[name], path
        seen[name] = path
    return None

