"""The report's figures: the per-image IoU histogram and images/s against batch size (800 x 500
PNGs drawn by matplotlib's Agg without pyplot; the speed tables draw the second too), and the
overlays of a run's worst and best images: the input image at S x S, the predicted car filled cyan
(from the run's outputs, else the streaming mode's mask PNGs), the label's outline in red, a
caption with the image's IoU."""

import io
import logging
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .cli import UserError
from .data import DECODE_ERRORS, IMAGE_DIR, MASK_DIR, load_label, mask_path
from .formats import IMAGE_SUFFIXES, atomic_write_bytes, read_bin
from .metrics import logits_to_mask
from .postprocess import output_classes
from .results import MODELZOO_MIN_IOU, read_mask_png, select_extremes

log = logging.getLogger(__name__)

PLOT_FIGSIZE = (8, 5)
PLOT_DPI = 100  # 800 x 500 pixels, always (no bbox_inches="tight")
PRED_COLOUR = np.array([0, 255, 255], dtype=np.float32)  # cyan
PRED_ALPHA = 0.4
LABEL_COLOUR = np.array([255, 40, 40], dtype=np.uint8)  # red
OVERLAY_RE = re.compile(r"(worst|best)_[0-9]+_.+\.png")


def plural(n, word):
    """``"1 row"``, ``"2 rows"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _figure():
    """An 800 x 500 Figure drawn by Agg, without pyplot (no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_FIGSIZE, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, out_png):
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)


def plot_iou_hist(ious, out_png):
    """Histogram of per-image IoU with the mean marked (and the 0.5 threshold if any image is below)."""
    ious = np.asarray(list(ious), dtype=np.float64)
    mean = float(ious.mean())
    n_below = int(np.count_nonzero(ious < MODELZOO_MIN_IOU))
    lowest = float(ious.min())
    lo = 0.0 if n_below else max(0.0, lowest - 0.05 * max(1.0 - lowest, 0.02))
    n_bins = int(np.clip(round(2 * math.sqrt(ious.size)), 10, 50))
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(ious, bins=np.linspace(lo, 1.0, n_bins + 1), color="#4c72b0", edgecolor="white")
    ax.axvline(mean, color="#d62728", linestyle="--", linewidth=1.5, label=f"mean IoU {mean:.4f}")
    if n_below:
        ax.axvline(MODELZOO_MIN_IOU, color="0.3", linestyle=":", linewidth=1.5,
                   label=f"{MODELZOO_MIN_IOU}: {plural(n_below, 'difficult image')} below "
                         f"(left out of the ModelZoo figure)")
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("IoU of the car class")
    ax.set_ylabel("images")
    ax.set_title(f"Per-image IoU, {plural(ious.size, 'image')}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left")
    return _save_figure(fig, out_png)


def plot_fps_vs_batch(rows, out_png, title="UNet throughput against batch size"):
    """images/s against batch size, one line per (backend, precision); 800 x 500 PNG.
    ``rows``: dicts with ``backend``, ``precision``, ``batchsize``, ``fps`` (other keys ignored)."""
    lines = {}
    for row in rows:
        lines.setdefault((row["backend"], row["precision"]), []).append((row["batchsize"], row["fps"]))
    from matplotlib.ticker import NullLocator

    fig = _figure()
    ax = fig.add_subplot()
    for (backend, precision), points in lines.items():
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, ys, marker="o", label=f"{backend} {precision}")
        for x, y in points:
            ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ticks = sorted({p[0] for points in lines.values() for p in points})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    if len(ticks) == 1:
        ax.set_xlim(ticks[0] / 2, ticks[0] * 2)
    ax.set_ylim(bottom=0, top=max(p[1] for points in lines.values() for p in points) * 1.15 or 1.0)
    ax.set_xlabel("batch size")
    ax.set_ylabel("images/s (1000 x batch size / mean compute ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    return _save_figure(fig, out_png)


def find_image(data, stem):
    """``DATA/train/<stem>.jpg|.jpeg|.png`` (any case of the suffix), or None."""
    train = data / IMAGE_DIR
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
    inner = mask
    for _ in range(width):
        p = np.pad(inner, 1, constant_values=False)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def make_overlay(image_path, pred, label, title, size):
    """The input image resized to size x size, the prediction (bool) filled cyan, the label (bool; None:
    none) outlined red; at the top left, on a dark box, ``title`` and (when it fits) a legend."""
    with Image.open(image_path) as img:
        rgb = img.convert("RGB").resize((size, size))
    arr = np.asarray(rgb).astype(np.float32)
    arr[pred] = arr[pred] * (1 - PRED_ALPHA) + PRED_COLOUR * PRED_ALPHA
    arr = arr.round().clip(0, 255).astype(np.uint8)
    if label is not None:
        arr[edge_mask(label, 2 if size >= 256 else 1)] = LABEL_COLOUR
    out = Image.fromarray(arr, "RGB")
    try:
        font = ImageFont.load_default(size=max(10, size // 36))
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        font = ImageFont.load_default()
    pad = max(2, size // 150)
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


def write_overlays(records, w, data, batchsize, size, out_dir):
    """Overlays of the worst and best images of the run ``w`` into ``out_dir``: the paths written. An
    image whose files are missing or unreadable is skipped with a warning; earlier ``worst_*``/``best_*``
    PNGs that this call did not write are removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    worst, best = select_extremes(records)
    planned = [(f"worst_{i}_{r['name']}.png", r) for i, r in enumerate(worst, 1)]
    planned += [(f"best_{i}_{r['name']}.png", r) for i, r in enumerate(best, 1)]
    written = []
    for filename, record in planned:
        stem = record["name"]
        try:
            image = find_image(data, stem)
            if image is None:
                log.warning("%s: no image %s.jpg/.jpeg/.png, overlay skipped", data / IMAGE_DIR, stem)
                continue
            pred = load_prediction(w, batchsize, stem, size)
            if pred is None:
                log.warning("%s: no prediction (neither %s nor %s), overlay skipped", stem,
                            w.outputs(batchsize) / f"{stem}.bin", w.masks(batchsize) / f"{stem}.png")
                continue
            label_path = mask_path(data / MASK_DIR, stem)
            label = load_label(label_path, size) if label_path.is_file() else None
            if label is None:
                log.warning("%s: mask not found, overlay without the label outline", label_path)
            buf = io.BytesIO()
            make_overlay(image, pred, label, f"{stem}  IoU {record['iou']:.4f}", size).save(buf, format="PNG")
            atomic_write_bytes(out_dir / filename, buf.getvalue())
        except (UserError, ValueError, *DECODE_ERRORS) as exc:
            log.warning("%s: overlay skipped (%s)", stem, exc)
            continue
        written.append(out_dir / filename)
    keep = {p.name for p in written}
    for path in out_dir.iterdir():
        if OVERLAY_RE.fullmatch(path.name) and path.name not in keep and path.is_file():
            path.unlink()
    return written
