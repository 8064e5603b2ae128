"""Stage 1: images -> raw float32 CHW ``.bin`` files, the model's input (``data.load_image`` of each).

The folder is converted over a process pool. A file that cannot be decoded is named in a
warning, every good image is still written, and the bad ones are listed in the final error.
Nothing in the output folder is ever deleted, and nothing but ``<stem>.bin`` is written there.
"""

import logging
from pathlib import Path

from .cli import UserError, os_error
from .data import find_images, try_load_image, unique_stems
from .formats import DEFAULT_SIZE, IMAGE_SUFFIXES, natural_sorted, write_bin
from .parallel import parallel_map

log = logging.getLogger(__name__)


def _convert_one(task):
    """Worker: (source, target, size) -> (source, None) or (source, why it could not be read)."""
    src, dst, size = task
    array, why = try_load_image(src, size)
    if why:
        return src, why
    try:
        write_bin(dst, array)
    except OSError as exc:
        raise os_error(dst, exc) from None
    return src, None


def plan_folder(src, dst):
    """``{target .bin path: image path}`` for every image of ``src``; an output that would land in
    the source folder, or two images with one name, is a :class:`UserError`."""
    src, dst = Path(src), Path(dst)
    stems = unique_stems(find_images(src))
    if not stems:
        raise UserError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    if dst.resolve() == src.resolve():
        raise UserError(f"{dst}: the output folder must not be the image folder (the .bin files would mix "
                        f"with the images)")
    return {dst / f"{stem}.bin": path for stem, path in stems.items()}


def preprocess_folder(src, dst, size=DEFAULT_SIZE, workers=None):
    """Convert every image in ``src`` to ``dst/<stem>.bin``; return ``(n_written, bad_files)``.

    ``bad_files`` lists the files that could not be decoded (each also named in a warning);
    every other image is written. No images at all is a :class:`UserError`.
    """
    if size < 16:
        raise UserError(f"--size {size}: the UNet needs at least 16 x 16 (four 2x poolings)")
    targets = plan_folder(src, dst)
    dst = Path(dst)
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(dst, exc, "create the output folder") from None
    tasks = [(str(path), str(target), size) for target, path in targets.items()]
    bad = []
    for source, why in parallel_map(_convert_one, tasks, workers, desc="preprocess", unit="img"):
        if why is not None:
            log.warning("%s: cannot read the image (%s)", source, why)
            bad.append(source)
    return len(tasks) - len(bad), natural_sorted(bad)
