"""A name a user gives for a file or folder inside another (``--output_dirname``, an output file
of a summary) stays inside it: :func:`inside`."""

import os
from pathlib import Path


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
