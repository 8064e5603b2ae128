"""Carvana data: finding images, pairing each with its mask, and decoding both as the model sees them.

Layout (Kaggle's): ``DATA/train/<carid>_<NN>.jpg`` and ``DATA/train_masks/<carid>_<NN>_mask.gif``;
a mask may also be ``<stem>_mask.png`` (users' own data; the GIF is taken when both are there).

- Image, by definition (byte for byte): PIL ``Image.open(p).convert("RGB")``, then
  ``resize((size, size))`` with PIL's default filter (bicubic for RGB; aspect ratio not kept),
  float32, HWC -> CHW (RGB order), divided by 255, no mean/std.
- Mask: palette indices, car == 1 (``'L'`` and ``'1'`` masks, e.g. 0/255 PNGs: car where the
  value is > 0), resized to size x size with NEAREST when its size differs.
- Decoded ahead of the model (the stream, predict, the cluster's decoding tasks), in a worker
  (``decode``), packed into the model's whole batch, a short last one padded with copies of its
  first image as the runner pads (``pack_batch``); an unreadable image is logged, listed and left
  out, the next ones filling its slot (``decoded_units``).
"""

import logging
import struct
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from .cli import UserError
from .formats import DEFAULT_SIZE, IMAGE_SUFFIXES, list_files, natural_key

log = logging.getLogger(__name__)

IMAGE_DIR = "train"
MASK_DIR = "train_masks"
MASK_SUFFIXES = ("_mask.gif", "_mask.png")  # Carvana's GIF first, then the PNG of users' own data
# What PIL (and the codecs under it) raise for a corrupt, truncated or foreign file.
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
                 Image.DecompressionBombError)


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


def try_load_image(path, size=DEFAULT_SIZE):
    """``(load_image(...), None)``, or ``(None, why)`` for a file PIL cannot read."""
    try:
        return load_image(path, size), None
    except DECODE_ERRORS as exc:
        return None, f"{type(exc).__name__}: {exc}"


def mask_path(label_dir, stem):
    """``<stem>_mask.gif``, else ``<stem>_mask.png``; the GIF's path when there is neither."""
    for suffix in MASK_SUFFIXES:
        path = Path(label_dir) / f"{stem}{suffix}"
        if path.is_file():
            return path
    return Path(label_dir) / f"{stem}{MASK_SUFFIXES[0]}"


def mask_not_found(missing, total=1):
    """``"<...>_mask.gif: mask not found (nor <stem>_mask.png; the label of IMAGE)"`` for the first of
    ``missing``, (mask, image) pairs, and the count of the others of the ``total`` images."""
    label, image = missing[0]
    other = label.name[: -len(MASK_SUFFIXES[0])] + MASK_SUFFIXES[1]
    more = f"; {len(missing) - 1} more of the {total} images have no mask" if len(missing) > 1 else ""
    return f"{label}: mask not found (nor {other}; the label of {image}){more}"


def load_label(path, size=DEFAULT_SIZE):
    """The car mask (bool, size x size; ``size=None``: its own) of a label image (module notes)."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in ("P", "L", "1"):
                raise UserError(f"{path}: a {mode} image, expected a palette (P), L or 1 mask")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.NEAREST)
            values = np.array(img)
    except DECODE_ERRORS as exc:
        raise UserError(f"{path}: cannot read the mask ({type(exc).__name__}: {exc})") from None
    return values == 1 if mode == "P" else values > 0


def find_files(folder, suffixes, what):
    """:func:`formats.list_files`, and a warning for every other file (sub-folders pass silently)."""
    files = list_files(folder, suffixes, what)
    chosen = set(files)
    for path in sorted(Path(folder).iterdir(), key=natural_key):
        if path.is_file() and path not in chosen:
            log.warning("%s: not an %s file (%s), skipped", path, what, "/".join(suffixes))
    return files


def find_images(folder):
    """``{stem: image path}`` of ``folder``'s images, natural order (other files are skipped with a
    warning); no image, or two with one stem, is a :class:`UserError`."""
    stems = unique_stems(find_files(folder, IMAGE_SUFFIXES, "image"))
    if not stems:
        raise UserError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return stems


def unique_stems(paths):
    """``{stem: path}``; two files with one stem (``a.jpg``, ``a.png``) are a :class:`UserError`."""
    stems = {}
    for path in paths:
        if path.stem in stems:
            raise UserError(f"{stems[path.stem]} and {path} have the same name {path.stem}")
        stems[path.stem] = path
    return stems


def pair_carvana(data, require_masks=True):
    """``[(stem, image path, mask path), ...]`` for every image of ``DATA/train``, natural order; a
    missing mask is a :class:`UserError` (with ``require_masks=False``: None)."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: data folder not found (it must hold {IMAGE_DIR}/ and {MASK_DIR}/)")
    image_dir, label_dir = data / IMAGE_DIR, data / MASK_DIR
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: image folder not found (the data folder must hold {IMAGE_DIR}/ "
                        f"and {MASK_DIR}/)")
    if require_masks and not label_dir.is_dir():
        raise UserError(f"{label_dir}: mask folder not found (the data folder must hold {IMAGE_DIR}/ "
                        f"and {MASK_DIR}/)")
    stems = find_images(image_dir)
    pairs, missing = [], []
    for stem, image in stems.items():
        label = mask_path(label_dir, stem)
        if not label.is_file():
            missing.append((label, image))
            label = None
        pairs.append((stem, image, label))
    if missing and require_masks:
        raise UserError(f"{mask_not_found(missing, len(pairs))}; add the masks, or pass labels=none to the "
                        f"driver to run without scoring")
    return pairs


def decode(task):
    """Worker: (image path, mask path, size) -> (image array, label mask, None) or (None, None, why)."""
    image_path, label_path, size = task
    image, why = try_load_image(image_path, size)
    return (None, None, why) if why else (image, load_label(label_path, size), None)


def pack_batch(spec, images):
    """One batch array: the images, then copies of the first (padding, as the runner pads)."""
    array = np.empty(spec.shape, spec.dtype)  # a new array each batch: a backend may keep it
    for slot, image in enumerate(images):
        array[slot] = image
    array[len(images):] = array[0]
    return array


def decoded_units(decoded, tasks, spec, timings, bad, position=0):
    """``([batch array], (items, (first, end, [unreadable positions])))`` per batch of ``tasks[position:]``
    (what ``decoded`` decodes): ``items`` ``[(path, label), ...]``; the unit, the task positions
    first..end-1 it took, is well defined whatever is unreadable (logged, listed in ``bad``, left out)."""
    batchsize = spec.shape[0]
    while position < len(tasks):
        items, images, first, skipped = [], [], position, []
        while len(items) < batchsize and position < len(tasks):
            start = time.perf_counter()
            image, label, why = next(decoded)
            timings.add("wait_ms", start)
            path = tasks[position][0]
            position += 1
            if why is not None:
                log.warning("%s: cannot read the image (%s)", path, why)
                bad.append(path)
                skipped.append(position - 1)
                continue
            items.append((path, label))
            images.append(image)
        if items:
            yield [pack_batch(spec, images)], (items, (first, position, skipped))
