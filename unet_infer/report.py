"""Stage 7: the report of a run: summary table, per-image scores, overlays, IoU histogram.

The driver's command (scripts/run_all.sh runs it last):

    python3 -m unet_infer.report --work work --data work/sample --batchsizes 8 --backend onnxruntime --precision fp32

It reads, under --work, for every batch size B that has both files (natural order of B):
  result_bsB.json             the scores (postprocess_unet_pth.py --result=WORK/result_bsB.txt)
  result/bsB_summary.json     the runner's ais_bench summary (throughput, backend, precision)
and for the overlays the predictions of the batch size given first in --batchsizes:
  result/bsB/<stem>.bin (or <stem>_0.bin), else result/bsB_masks/<stem>.png (0/255 mask, the
  streaming mode); an image without either gets no overlay (a warning, not a failure).

It writes WORK/report/:
  summary.md          one row per batch size: IoU over all images, the ModelZoo IoU (images
                      with IoU >= 0.5 only), Dice, images, images/s, backend, precision, machine
  per_image.csv       name,iou,dice per image (6 decimals) and a final mean row
  iou_hist.png        histogram of the per-image IoU (800 x 500)
  overlays/           worst_<k>_<stem>.png and best_<k>_<stem>.png (4 each at most): the input
                      image at S x S, the predicted car in cyan, the label's outline in red
  fps_vs_batch.png    images/s against batch size, when the table has 2 or more batch sizes

images/s is ais_bench's throughput: 1000 x batch size / mean compute time of one batch (ms);
host time (reading files, pre- and postprocessing, copies) is not counted. Backend and
precision come from each run's summary where it records them, else from --backend/--precision.
"""

import argparse
import csv
import io
import json
import logging
import math
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import HelpFormatter, UserError, run_cli
from .formats import DEFAULT_SIZE, IMAGE_SUFFIXES, atomic_write_bytes, atomic_write_text, natural_key, read_bin
from .machine import describe_machine, today
from .metrics import logits_to_mask
from .postprocess import MODELZOO_MIN_IOU, load_label, mask_path, output_classes
from .preprocess import DECODE_ERRORS, check_size
from .progress import set_quiet
from .summary import read_summary

log = logging.getLogger(__name__)

REPORT_DIR = "report"
BACKENDS = ("onnxruntime", "torch", "acl")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
N_EXTREMES = 4
PRED_COLOUR = np.array([0, 255, 255], dtype=np.float32)  # cyan
PRED_ALPHA = 0.4
LABEL_COLOUR = np.array([255, 40, 40], dtype=np.uint8)  # red
PLOT_FIGSIZE = (8, 5)
PLOT_DPI = 100  # 800 x 500 pixels, always (no bbox_inches="tight")

RESULT_RE = re.compile(r"result_bs([1-9][0-9]*)\.json")
OVERLAY_RE = re.compile(r"(worst|best)_[0-9]+_.+\.png")
COLUMNS = ("Batch Size", "Data set", "IoU (all images)", f"IoU (ModelZoo: images >= {MODELZOO_MIN_IOU})",
           "Dice", "Images", "images/s", "Backend", "Precision", "Machine")
THROUGHPUT_NOTE = ("images/s = 1000 x batch size / mean compute time of one batch (ms), as ais_bench "
                   "reports it: the model's compute only; host time (reading files, pre- and "
                   "postprocessing, copies to and from the device) is not counted.")


# ---- reading the results -----------------------------------------------------------------

def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})") from None


def find_results(work):
    """``{B: WORK/result_bsB.json}`` for every such file, in increasing B."""
    work = Path(work)
    if not work.is_dir():
        raise UserError(f"{work}: work folder not found")
    found = {}
    for path in work.iterdir():
        match = RESULT_RE.fullmatch(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def read_result(path):
    """A ``result_bsB.json`` of postprocess, checked for the keys the report uses."""
    data = _read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a postprocess result (expected a JSON object)")
    missing = [key for key in ("mean_iou", "mean_dice", "n_images", "per_image") if key not in data]
    if missing:
        raise UserError(f"{path}: not a postprocess result (no {', '.join(missing)})")
    per_image = data["per_image"]
    if (not isinstance(per_image, list) or not per_image
            or not all(isinstance(r, dict) and {"name", "iou", "dice"} <= r.keys() for r in per_image)):
        raise UserError(f"{path}: 'per_image' must be a non-empty list of {{name, iou, dice}}")
    return data


def _arg(summary, key):
    args = summary.get("args")
    value = args.get(key) if isinstance(args, dict) else None
    return value if isinstance(value, str) and value else None


def run_backend(summary, default):
    """The backend a summary records (our runner's ``backend`` key, or its ``args``), else ``default``."""
    value = summary.get("backend")
    return value if isinstance(value, str) and value else (_arg(summary, "backend") or default)


def run_precision(summary, backend, default):
    """The precision of a run: a ``precision`` key, the torch runner's ``--precision``, an int8 model name.

    The runner's ``--precision`` only matters to the torch backend (an onnxruntime run of an int8
    model still records ``fp32``), so for the others it is not trusted; ``default`` otherwise.
    """
    value = summary.get("precision")
    if isinstance(value, str) and value:
        return value
    if backend == "torch" and _arg(summary, "precision"):
        return _arg(summary, "precision")
    model = _arg(summary, "model")
    if model and "int8" in Path(model).name.lower():
        return "int8"
    return default


def _run_device(summary, backend):
    """``"cuda:<id>"`` for a torch run (the torch backend uses CUDA when it is there), else None."""
    if backend != "torch":
        return None
    args = summary.get("args")
    device = args.get("device", 0) if isinstance(args, dict) else 0
    if isinstance(device, list):
        device = device[0] if device else 0
    return f"cuda:{device}" if isinstance(device, int) else None


def collect_rows(work, data_name, backend, precision, machine=None):
    """One row per batch size with both ``result_bsB.json`` and ``result/bsB_summary.json``.

    Each row: ``batchsize, data, mean_iou, modelzoo_iou, mean_dice, n_images, n_below_0_5, fps,
    compute_ms, backend, precision, machine, per_image``. A missing WORK or no result file at all
    is a :class:`UserError`; a result without its summary is left out with a warning.
    """
    work = Path(work)
    results = find_results(work)
    if not results:
        raise UserError(f"{work}: no result_bs<B>.json files (score a run first: postprocess_unet_pth.py "
                        f"--result={work}/result_bs8.txt, or scripts/run_all.sh)")
    machines = {}
    rows = []
    for bs, result_path in results.items():
        summary_path = work / "result" / f"bs{bs}_summary.json"
        if not summary_path.is_file():
            log.warning("%s: no summary %s beside it, batch size %d left out of the table",
                        result_path, summary_path, bs)
            continue
        result = read_result(result_path)
        summary = read_summary(summary_path)
        fps = summary.get("throughput")
        if not isinstance(fps, (int, float)):
            raise UserError(f"{summary_path}: no numeric 'throughput'")
        run_be = run_backend(summary, backend)
        recorded = summary.get("machine")
        if isinstance(recorded, str) and recorded:
            where = recorded
        elif machine:
            where = machine
        else:
            device = _run_device(summary, run_be)
            if device not in machines:
                machines[device] = describe_machine(device)
            where = machines[device]
        compute = summary.get("NPU_compute_time")
        rows.append({
            "batchsize": bs,
            "data": data_name,
            "mean_iou": float(result["mean_iou"]),
            "modelzoo_iou": None if result.get("modelzoo_iou") is None else float(result["modelzoo_iou"]),
            "mean_dice": float(result["mean_dice"]),
            "n_images": int(result["n_images"]),
            "n_below_0_5": int(result.get("n_below_0_5") or 0),
            "fps": float(fps),
            "compute_ms": float(compute["mean"]) if isinstance(compute, dict) and "mean" in compute else None,
            "backend": run_be,
            "precision": run_precision(summary, run_be, precision),
            "machine": where,
            "per_image": [{"name": str(r["name"]), "iou": float(r["iou"]), "dice": float(r["dice"])}
                          for r in result["per_image"]],
        })
    if not rows:
        raise UserError(f"{work}: no batch size has both result_bs<B>.json and result/bs<B>_summary.json")
    return rows


# ---- text outputs ------------------------------------------------------------------------

def _cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_row(row):
    """The cells of one table row, formatted."""
    modelzoo = "n/a" if row["modelzoo_iou"] is None else f"{row['modelzoo_iou']:.6f}"
    return [str(row["batchsize"]), row["data"], f"{row['mean_iou']:.6f}", modelzoo, f"{row['mean_dice']:.6f}",
            str(row["n_images"]), f"{row['fps']:.2f}", row["backend"], row["precision"], row["machine"]]


def summary_markdown(rows, date=None, per_image_bs=None):
    """The text of summary.md."""
    lines = ["# UNet on Carvana: accuracy and throughput", "",
             "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in format_row(row)) + " |" for row in rows]
    lines += ["", f"Generated {date or today()} by `python3 -m unet_infer.report`.", "",
              f"- {THROUGHPUT_NOTE}",
              f"- IoU of the car class, mean over all images; the ModelZoo figure leaves out the "
              f"\"difficult\" images whose IoU is below {MODELZOO_MIN_IOU}."]
    below = [f"bs {r['batchsize']}: {r['n_below_0_5']}" for r in rows if r["n_below_0_5"]]
    if below:
        lines.append(f"- Images below {MODELZOO_MIN_IOU}: " + ", ".join(below) + ".")
    if per_image_bs is not None:
        lines.append(f"- Per-image scores (bs {per_image_bs}): `per_image.csv`; histogram: `iou_hist.png`; "
                     f"worst and best images: `overlays/`.")
    return "\n".join(lines) + "\n"


def write_summary_md(rows, path, date=None, per_image_bs=None):
    """Write :func:`summary_markdown` to ``path`` atomically; return the path."""
    atomic_write_text(path, summary_markdown(rows, date, per_image_bs))
    return Path(path)


def write_per_image_csv(records, path):
    """``name,iou,dice`` per record (6 decimals), then ``mean,<mean iou>,<mean dice>``."""
    if not records:
        raise UserError(f"{path}: no per-image records to write")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "iou", "dice"])
    for record in records:
        writer.writerow([record["name"], f"{record['iou']:.6f}", f"{record['dice']:.6f}"])
    ious = np.array([r["iou"] for r in records], dtype=np.float64)
    dices = np.array([r["dice"] for r in records], dtype=np.float64)
    writer.writerow(["mean", f"{ious.mean():.6f}", f"{dices.mean():.6f}"])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


# ---- overlays ----------------------------------------------------------------------------

def select_extremes(records, n=N_EXTREMES):
    """``(worst, best)``: the lowest-IoU records (worst first) and the highest (best first).

    At most ``n`` each and never the same image twice: with fewer than 2n images, the worst
    get the larger half. Ties go in natural order of the name.
    """
    ordered = sorted(records, key=lambda r: (r["iou"], natural_key(r["name"])))
    n_worst = min(n, (len(ordered) + 1) // 2)
    n_best = min(n, len(ordered) - n_worst)
    worst = ordered[:n_worst]
    best = sorted(ordered[n_worst:], key=lambda r: (-r["iou"], natural_key(r["name"])))[:n_best]
    return worst, best


def find_image(data, stem):
    """``DATA/train/<stem>.jpg|.jpeg|.png`` (any case of the suffix), or None."""
    train = Path(data) / "train"
    for suffix in IMAGE_SUFFIXES:
        for candidate in (train / f"{stem}{suffix}", train / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_prediction(work, batchsize, stem, size=DEFAULT_SIZE):
    """The predicted car mask (bool, size x size) of ``stem``, or None when the run kept none.

    From ``result/bsB/<stem>.bin`` or ``<stem>_0.bin`` (logits), else from the streaming mode's
    ``result/bsB_masks/<stem>.png`` (car where the value is > 127). A bad file raises.
    """
    work = Path(work)
    outputs = work / "result" / f"bs{batchsize}"
    for path in (outputs / f"{stem}.bin", outputs / f"{stem}_0.bin"):
        if path.is_file():
            classes = output_classes(path, size)
            return logits_to_mask(read_bin(path, shape=(classes, size, size)))
    png = work / "result" / f"bs{batchsize}_masks" / f"{stem}.png"
    if png.is_file():
        with Image.open(png) as img:
            mask = img.convert("L")
            if mask.size != (size, size):
                mask = mask.resize((size, size), Image.Resampling.NEAREST)
            return np.asarray(mask) > 127
    return None


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


def _draw_caption(img, lines):
    """Draw ``lines`` at the top left of ``img`` (RGB) on a dark translucent box; return the new image."""
    font = _font(img.width)
    pad = max(2, img.width // 150)
    draw = ImageDraw.Draw(img)
    boxes = [draw.textbbox((0, 0), line, font=font) for line in lines]
    line_h = max(b[3] for b in boxes) + pad
    width = max(b[2] for b in boxes) + 2 * pad
    height = line_h * len(lines) + pad
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ImageDraw.Draw(layer).rectangle([0, 0, width, height], fill=(0, 0, 0, 170))
    out = Image.alpha_composite(img.convert("RGBA"), layer)
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((pad, pad + i * line_h), line, font=font, fill=(255, 255, 255, 255))
    return out.convert("RGB")


def make_overlay(image_path, pred_mask, label_mask, title, size=DEFAULT_SIZE):
    """The input image resized to size x size, the prediction filled cyan, the label outlined red.

    ``label_mask`` may be None (no outline). The caption is ``title`` and, when it fits, a legend.
    """
    pred = np.asarray(pred_mask, dtype=bool)
    if pred.shape != (size, size):
        raise ValueError(f"prediction of shape {pred.shape}, expected {(size, size)}")
    with Image.open(image_path) as img:
        rgb = img.convert("RGB").resize((size, size))
    arr = np.asarray(rgb).astype(np.float32)
    arr[pred] = arr[pred] * (1 - PRED_ALPHA) + PRED_COLOUR * PRED_ALPHA
    arr = arr.round().clip(0, 255).astype(np.uint8)
    if label_mask is not None:
        label = np.asarray(label_mask, dtype=bool)
        if label.shape != (size, size):
            raise ValueError(f"label of shape {label.shape}, expected {(size, size)}")
        arr[edge_mask(label, 2 if size >= 256 else 1)] = LABEL_COLOUR
    out = Image.fromarray(arr, "RGB")
    lines = [title]
    legend = "cyan: prediction   red: label outline"
    probe = ImageDraw.Draw(out).textbbox((0, 0), legend, font=_font(size))
    if probe[2] <= size * 0.9:
        lines.append(legend)
    return _draw_caption(out, lines)


def _png_bytes(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_overlays(records, work, data, batchsize, size, out_dir):
    """Overlays of the worst and best images into ``out_dir``; return the paths written.

    An image whose input, prediction or files cannot be read is skipped with a warning. Earlier
    ``worst_*``/``best_*`` PNGs in ``out_dir`` that this call did not write are removed.
    """
    out_dir = Path(out_dir)
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
                log.warning("%s: no image %s.jpg/.jpeg/.png, overlay skipped", Path(data) / "train", stem)
                continue
            pred = load_prediction(work, batchsize, stem, size)
            if pred is None:
                log.warning("%s: no prediction (neither result/bs%d/%s.bin nor result/bs%d_masks/%s.png), "
                            "overlay skipped", stem, batchsize, stem, batchsize, stem)
                continue
            label_path = mask_path(Path(data) / "train_masks", stem)
            label = load_label(label_path, size) if label_path.is_file() else None
            if label is None:
                log.warning("%s: mask not found, overlay without the label outline", label_path)
            overlay = make_overlay(image, pred, label, f"{stem}  IoU {record['iou']:.4f}", size)
            target = out_dir / filename
            atomic_write_bytes(target, _png_bytes(overlay))
            written.append(target)
        except (UserError, ValueError, *DECODE_ERRORS) as exc:
            log.warning("%s: overlay skipped (%s)", stem, exc)
    keep = {p.name for p in written}
    for path in out_dir.iterdir():
        if OVERLAY_RE.fullmatch(path.name) and path.name not in keep and path.is_file():
            path.unlink()
    return written


# ---- plots -------------------------------------------------------------------------------

def _figure():
    """An 800 x 500 Figure drawn by Agg, without pyplot (no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_FIGSIZE, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, out_png):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PLOT_DPI)
    atomic_write_bytes(out_png, buf.getvalue())
    return Path(out_png)


def plot_iou_hist(ious, out_png):
    """Histogram of per-image IoU with the mean marked (and the 0.5 threshold if any image is below)."""
    ious = np.asarray(list(ious), dtype=np.float64)
    if ious.size == 0:
        raise UserError(f"{out_png}: no IoU values to plot")
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
                   label=f"{MODELZOO_MIN_IOU}: {n_below} difficult image{'s' if n_below != 1 else ''} below "
                         f"(left out of the ModelZoo figure)")
    ax.set_xlim(lo, 1.0)
    ax.set_xlabel("IoU of the car class")
    ax.set_ylabel("images")
    ax.set_title(f"Per-image IoU, {ious.size} image{'s' if ious.size != 1 else ''}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return _save_figure(fig, out_png)


def plot_fps_vs_batch(rows, out_png, title="UNet throughput against batch size"):
    """images/s against batch size, one line per (backend, precision); 800 x 500 PNG.

    ``rows``: dicts with ``backend``, ``precision``, ``batchsize``, ``fps`` (other keys ignored).
    """
    lines = {}
    for row in rows:
        try:
            key = (str(row["backend"]), str(row["precision"]))
            point = (int(row["batchsize"]), float(row["fps"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"plot_fps_vs_batch: a row needs backend, precision, batchsize and fps ({exc!r})") from None
        if point[0] < 1:
            raise UserError(f"plot_fps_vs_batch: batch size {point[0]} is not positive")
        lines.setdefault(key, []).append(point)
    if not lines:
        raise UserError(f"{out_png}: no rows to plot")
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
    fig.tight_layout()
    return _save_figure(fig, out_png)


# ---- the whole report --------------------------------------------------------------------

def build_report(work, data, batchsizes, backend, precision, size=DEFAULT_SIZE, machine=None):
    """Write WORK/report/ (see the module notes); return what was written.

    Returns ``{"summary_md", "per_image_csv", "iou_hist", "fps_plot" (or None), "overlays",
    "rows", "batchsize"}``; ``batchsize`` is the one whose per-image scores and predictions were used.
    """
    check_size(size)
    work, data = Path(work), Path(data)
    if not work.is_dir():
        raise UserError(f"{work}: work folder not found")
    if not data.is_dir():
        raise UserError(f"{data}: data folder not found (it must hold train/ and train_masks/)")
    rows = collect_rows(work, data.resolve().name or str(data), backend, precision, machine)
    by_bs = {row["batchsize"]: row for row in rows}
    for bs in batchsizes:
        if bs not in by_bs:
            log.warning("batch size %d: no result_bs%d.json with result/bs%d_summary.json in %s, "
                        "not in the report", bs, bs, bs, work)
    chosen = next((bs for bs in batchsizes if bs in by_bs), rows[0]["batchsize"])
    records = by_bs[chosen]["per_image"]

    out = work / REPORT_DIR
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the report folder ({exc})") from None
    per_image_csv = write_per_image_csv(records, out / "per_image.csv")
    iou_hist = plot_iou_hist([r["iou"] for r in records], out / "iou_hist.png")
    fps_plot = plot_fps_vs_batch(rows, out / "fps_vs_batch.png") if len(rows) > 1 else None
    overlays = write_overlays(records, work, data, chosen, size, out / "overlays")
    summary_md = write_summary_md(rows, out / "summary.md", per_image_bs=chosen)
    return {"summary_md": summary_md, "per_image_csv": per_image_csv, "iou_hist": iou_hist,
            "fps_plot": fps_plot, "overlays": overlays, "rows": rows, "batchsize": chosen}


def _batchsizes(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a batch size or a comma list, e.g. 8 or 1,8,32")
    return values


def build_parser():
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.report", description=__doc__,
                                     formatter_class=HelpFormatter, allow_abbrev=False)
    add = parser.add_argument
    add("--work", required=True, help="work folder of the run (holds result_bsB.json and result/)")
    add("--data", required=True, help="Carvana-format data folder (train/, train_masks/); its name is the "
                                      "table's data set")
    add("--batchsizes", type=_batchsizes, default="8",
        help="batch sizes of this run, comma list; the first one with results gives per_image.csv "
             "and the overlays (the table lists every batch size found in --work)")
    add("--backend", default="onnxruntime", choices=BACKENDS, help="backend, when a run's summary does not say")
    add("--precision", default="fp32", choices=PRECISIONS, help="precision, when a run's summary does not say")
    add("--size", type=int, default=DEFAULT_SIZE, help="model output height and width")
    add("--machine", default=None, help="text of the Machine column; None: this machine's CPU model and core "
                                        "count, and the GPU for torch runs on CUDA")
    add("--quiet", action="store_true", help="no progress display")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    report = build_report(args.work, args.data, args.batchsizes, args.backend, args.precision,
                          size=args.size, machine=args.machine)
    print(f"report: {report['summary_md']} ({len(report['rows'])} rows, {len(report['overlays'])} overlays)")


if __name__ == "__main__":
    sys.exit(run_cli(main))
