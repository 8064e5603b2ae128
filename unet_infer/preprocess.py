"""Stage 1: images -> raw float32 CHW ``.bin`` files, the model's input.

One image, by definition (byte for byte): PIL ``Image.open(p).convert("RGB")``, then
``resize((size, size))`` with PIL's default filter (bicubic for RGB; aspect ratio not kept),
float32, HWC -> CHW (RGB order), divided by 255, no mean/std, written in ``ndarray.tofile``
layout as ``<stem>.bin`` (3 * size * size * 4 bytes).

The folder is converted over a process pool. A file that cannot be decoded is named in a
warning, every good image is still written, and the bad ones are listed in the final error.
Nothing in the output folder is ever deleted, and nothing but ``<stem>.bin`` is written there.
"""

import ctypes
import logging
import multiprocessing
import os
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError
from .formats import DEFAULT_SIZE, IMAGE_SUFFIXES, list_files, natural_sorted, write_bin
from .progress import progress

log = logging.getLogger(__name__)

# What PIL (and the codecs under it) raise for a corrupt, truncated or foreign file.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError)
_PR_SET_PDEATHSIG = 1


def default_workers():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def check_workers(workers):
    """``workers`` as a count (None -> every CPU); a count below 1 is a :class:`UserError`."""
    if workers is None:
        return default_workers()
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    return workers


def check_size(size):
    if size < 1:
        raise UserError(f"--size must be at least 1, got {size}")
    return size


def _unwind(signum, frame):
    raise SystemExit(128 + signum)


def _init_worker():
    """Leave Ctrl-C to the parent; when it stops the pool (SIGTERM), unwind so that a file
    being written loses its temporary name instead of being left behind. On Linux, a parent
    that is killed takes its forked workers with it (they would otherwise wait forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _unwind)
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError, TypeError):
        pass


def parallel_map(func, items, workers=None, desc="", unit="file"):
    """Yield ``func(item)`` for every item, in completion order, with a progress bar.

    ``func`` must be a module-level function (it is pickled). One worker runs in this process;
    more run in a pool, in chunks of up to 8 items: enough to keep the pool's hand-over (about
    1-2 ms of this process's time per chunk) small, few enough that the workers finish together.
    Ctrl-C is left to this process, which stops the pool.
    """
    items = list(items)
    workers = max(1, min(check_workers(workers), len(items)))
    # the pool is forked before the progress bar can start a thread
    pool = multiprocessing.Pool(workers, initializer=_init_worker) if workers > 1 else None
    finished = False
    try:
        chunksize = max(1, min(8, len(items) // (workers * 8)))
        results = pool.imap_unordered(func, items, chunksize) if pool else map(func, items)
        with progress(total=len(items), desc=desc, unit=unit) as bar:
            for result in results:
                bar.update(1)
                yield result
        finished = True
    finally:
        if pool and finished:  # idle workers leave on their own: no signal to race with
            pool.close()
            pool.join()
        elif pool:  # an error, Ctrl-C or an abandoned generator: stop the workers now
            pool.terminate()


def image_to_array(img, size=DEFAULT_SIZE):
    """A PIL image as the model's input: float32 CHW RGB in [0, 1], ``size`` x ``size``."""
    rgb = (img if img.mode == "RGB" else img.convert("RGB")).resize((size, size))
    chw = np.ascontiguousarray(np.asarray(rgb).transpose(2, 0, 1), dtype=np.float32)
    return chw / np.float32(255)


def load_image(path, size=DEFAULT_SIZE):
    """Read one image file and return :func:`image_to_array` of it (PIL errors pass through)."""
    with Image.open(path) as img:
        img.load()
        return image_to_array(img, size)


def _convert_one(task):
    """Worker: (source, target, size) -> (source, None) or (source, why it could not be read)."""
    src, dst, size = task
    try:
        array = load_image(src, size)
    except DECODE_ERRORS as exc:
        return src, f"{type(exc).__name__}: {exc}"
    try:
        write_bin(dst, array)
    except OSError as exc:
        raise UserError(f"{dst}: cannot write ({exc})") from None
    return src, None


def find_files(folder, suffixes, what):
    """:func:`list_files`, and a warning for every other file (sub-folders pass silently)."""
    files = list_files(folder, suffixes, what)
    chosen = set(files)
    for path in natural_sorted(Path(folder).iterdir()):
        if path.is_file() and path not in chosen:
            log.warning("%s: not a %s file (%s), skipped", path, what, "/".join(suffixes))
    return files


def find_images(src):
    """Images in ``src`` (not recursive), natural order; other files are skipped with a warning."""
    return find_files(src, IMAGE_SUFFIXES, "image")


def preprocess_folder(src, dst, size=DEFAULT_SIZE, workers=None):
    """Convert every image in ``src`` to ``dst/<stem>.bin``; return ``(n_written, bad_files)``.

    ``bad_files`` lists the files that could not be decoded (each also named in a warning);
    every other image is written. No images at all is a :class:`UserError`.
    """
    check_size(size)
    images = find_images(src)
    if not images:
        raise UserError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    targets = {}
    for path in images:
        name = path.stem + ".bin"
        if name in targets:
            raise UserError(f"{targets[name]} and {path} would both be written as {name}")
        targets[name] = path
    dst = Path(dst)
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{dst}: cannot create the output folder ({exc})") from None
    tasks = [(str(path), str(dst / name), size) for name, path in targets.items()]
    bad = []
    for source, why in parallel_map(_convert_one, tasks, workers, desc="preprocess", unit="img"):
        if why is not None:
            log.warning("%s: cannot read the image (%s)", source, why)
            bad.append(source)
    return len(tasks) - len(bad), natural_sorted(bad)
