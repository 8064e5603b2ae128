"""Carvana's run-length encoding and its submission CSV, written and read here only.

- RLE of a mask (H x W, car = true): the mask flattened row by row (C order, ``mask.reshape(-1)``),
  then ``start length`` for every run of car pixels, starts 1-based, space-separated, in order
  (the competition's ``train_masks.csv`` encoding). An empty mask is the empty string.
- Submission CSV: header ``img,rle_mask``, then one row per image: its file name with the
  extension (``0004d4463b50_01.jpg``) and the RLE of its mask at the image's own size.
"""

import csv
import io
from pathlib import Path

import numpy as np

from .cli import UserError, os_error
from .formats import atomic_write_text

HEADER = ("img", "rle_mask")


def rle_encode(mask):
    """``"start length start length ..."`` of a mask (non-bool: nonzero is car), starts 1-based."""
    flat = np.asarray(mask).astype(bool, copy=False).reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-based: run starts, then one past each run
    edges[1::2] -= edges[0::2]  # ends -> lengths
    return " ".join(map(str, edges.tolist()))


def rle_decode(text, shape):
    """The bool mask of ``shape`` (H, W) that :func:`rle_encode` gave ``text`` for.

    Runs must be in order, inside the mask and not overlap (touching runs are taken as they
    are); anything else is a ValueError that says what is wrong.
    """
    shape = tuple(int(n) for n in shape)
    total = int(np.prod(shape))
    try:
        numbers = np.array([int(part) for part in str(text).split()], dtype=np.int64)
    except ValueError:
        raise ValueError(f"RLE {str(text)[:40]!r}: not whole numbers") from None
    if numbers.size % 2:
        raise ValueError(f"RLE of {numbers.size} numbers: expected start/length pairs")
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    ends = starts + lengths  # 0-based, one past the run
    if numbers.size:
        if starts.min() < 0 or lengths.min() < 1:
            raise ValueError("RLE: starts begin at 1 and lengths at 1")
        if ends.max() > total:
            raise ValueError(f"RLE: a run ends at pixel {int(ends.max())}, past the {total} pixels of {shape}")
        if np.any(starts[1:] < ends[:-1]):
            raise ValueError("RLE: runs overlap or are out of order")
    edges = np.zeros(total + 1, dtype=np.int32)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return (np.cumsum(edges[:-1]) > 0).reshape(shape)


def submission_text(rows):
    """The CSV text of ``rows`` (``(file name, rle)`` pairs) under the ``img,rle_mask`` header."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return buf.getvalue()


def write_submission(path, rows):
    """Write the submission CSV atomically; ``rows``: ``(file name, rle)`` pairs, in order."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, submission_text(rows))
    except OSError as exc:
        raise os_error(path, exc) from None
    return path


def read_submission(path):
    """``[(file name, rle), ...]`` of a submission CSV (or ``train_masks.csv``), in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable text file ({exc})") from None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or tuple(lines[0]) != HEADER:
        raise UserError(f"{path}: not a submission CSV (the first line must be {','.join(HEADER)})")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if len(line) != 2:
            raise UserError(f"{path}, line {number}: expected 2 fields (img, rle_mask), found {len(line)}")
        rows.append((line[0], line[1]))
    return rows
