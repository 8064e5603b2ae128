"""Overlays of the worst and best images of a run: the input image at S x S, the predicted car
filled cyan (from the run's outputs, else the streaming mode's mask PNGs), the label's outline in
red, a caption with the image's IoU."""

import io
import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..cli import UserError
from ..data import DECODE_ERRORS, IMAGE_DIR, MASK_DIR, load_label, mask_path
from ..formats import IMAGE_SUFFIXES, atomic_write_bytes, read_bin
from ..metrics import logits_to_mask
from ..postprocess import output_classes
from ..results import read_mask_png, select_extremes

log = logging.getLogger(__name__)

PRED_COLOUR = np.array([0, 255, 255], dtype=np.float32)  # cyan
PRED_ALPHA = 0.4
LABEL_COLOUR = np.array([255, 40, 40], dtype=np.uint8)  # red
OVERLAY_RE = re.compile(r"(worst|best)_[0-9]+_.+\.png")


def find_image(data, stem):
    """``DATA/train/<stem>.jpg|.jpeg|.png`` (any case of the suffix), or None."""
    train = Path(data) / IMAGE_DIR
    for suffix in IMAGE_SUFFIXES:
        for candidate in (train / f"{stem}{suffix}", train / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_prediction(w, batchsize, stem, size):
    """The predicted car mask (bool, size x size) of ``stem`` in the run ``w`` (a :class:`Workdir`),
    or None when the run kept none; a bad file raises."""
    outputs = w.outputs(batchsize)
    for path in (outputs / f"{stem}.bin", outputs / f"{stem}_0.bin"):
        if path.is_file():
            classes = output_classes(path, size)
            return logits_to_mask(read_bin(path, shape=(classes, size, size)))
    png = w.masks(batchsize) / f"{stem}.png"
    return read_mask_png(png, size) if png.is_file() else None


def edge_mask(mask, width=1):
    """The inner outline of a boolean mask, ``width`` pixels thick (4-neighbour erosion by shifts)."""
    mask = np.asarray(mask, dtype=bool)
    inner = mask
    for _ in range(width):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def _font(size):
    px = max(10, size // 36)
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


def make_overlay(image_path, pred_mask, label_mask, title, size):
    """The input image resized to size x size, the prediction filled cyan, the label (None: none)
    outlined red; at the top left, on a dark box, ``title`` and (when it fits) a legend."""
    pred = np.asarray(pred_mask, dtype=bool)
    with Image.open(image_path) as img:
        rgb = img.convert("RGB").resize((size, size))
    arr = np.asarray(rgb).astype(np.float32)
    arr[pred] = arr[pred] * (1 - PRED_ALPHA) + PRED_COLOUR * PRED_ALPHA
    arr = arr.round().clip(0, 255).astype(np.uint8)
    if label_mask is not None:
        arr[edge_mask(label_mask, 2 if size >= 256 else 1)] = LABEL_COLOUR
    out = Image.fromarray(arr, "RGB")
    font, pad = _font(size), max(2, size // 150)
    lines = [title, "cyan: prediction   red: label outline"]
    boxes = [ImageDraw.Draw(out).textbbox((0, 0), line, font=font) for line in lines]
    if boxes[1][2] > size * 0.9:  # no room for the legend
        lines, boxes = lines[:1], boxes[:1]
    line_h = max(b[3] for b in boxes) + pad
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([0, 0, max(b[2] for b in boxes) + 2 * pad, line_h * len(lines) + pad],
                                    fill=(0, 0, 0, 170))
    out = Image.alpha_composite(out.convert("RGBA"), layer)
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, font=font, fill=(255, 255, 255, 255))
    return out.convert("RGB")


def write_overlays(records, work, data, batchsize, size, out_dir):
    """Overlays of the worst and best images of the run ``work`` (a :class:`Workdir`) into ``out_dir``:
    the paths written. An image whose files cannot be read is skipped with a warning; earlier
    ``worst_*``/``best_*`` PNGs that this call did not write are removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    worst, best = select_extremes(records)
    planned = [(f"worst_{i}_{r['name']}.png", r) for i, r in enumerate(worst, 1)]
    planned += [(f"best_{i}_{r['name']}.png", r) for i, r in enumerate(best, 1)]
    written = []
    for filename, record in planned:
        try:
            target = _write_overlay(record, work, data, batchsize, size, out_dir / filename)
        except (UserError, ValueError, *DECODE_ERRORS) as exc:
            log.warning("%s: overlay skipped (%s)", record["name"], exc)
            continue
        if target is not None:
            written.append(target)
    keep = {p.name for p in written}
    for path in out_dir.iterdir():
        if OVERLAY_RE.fullmatch(path.name) and path.name not in keep and path.is_file():
            path.unlink()
    return written


def _write_overlay(record, work, data, batchsize, size, target):
    """The overlay of one record to ``target``; None (and a warning) when its image or prediction is missing."""
    stem = record["name"]
    image = find_image(data, stem)
    if image is None:
        log.warning("%s: no image %s.jpg/.jpeg/.png, overlay skipped", Path(data) / IMAGE_DIR, stem)
        return None
    pred = load_prediction(work, batchsize, stem, size)
    if pred is None:
        log.warning("%s: no prediction (neither %s nor %s), overlay skipped", stem,
                    work.outputs(batchsize) / f"{stem}.bin", work.masks(batchsize) / f"{stem}.png")
        return None
    label_path = mask_path(Path(data) / MASK_DIR, stem)
    label = load_label(label_path, size) if label_path.is_file() else None
    if label is None:
        log.warning("%s: mask not found, overlay without the label outline", label_path)
    overlay = make_overlay(image, pred, label, f"{stem}  IoU {record['iou']:.4f}", size)
    buf = io.BytesIO()
    overlay.save(buf, format="PNG")
    atomic_write_bytes(target, buf.getvalue())
    return target
