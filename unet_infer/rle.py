"""Carvana's run-length encoding and its submission CSV, written here only.

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

from .cli import os_error
from .formats import atomic_write_text

HEADER = ("img", "rle_mask")


def rle_encode(mask):
    """``"start length start length ..."`` of a mask (non-bool: nonzero is car), starts 1-based."""
    flat = np.asarray(mask).astype(bool, copy=False).reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-based: run starts, then one past each run
    edges[1::2] -= edges[0::2]  # ends -> lengths
    return " ".join(map(str, edges.tolist()))


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
