"""The report's text files: summary.md (one row per batch size, see ``rows``) and per_image.csv."""

import csv
import io
from pathlib import Path

import numpy as np

from ..cli import UserError
from ..formats import atomic_write_text
from ..machine import today
from ..results import MODELZOO_MIN_IOU
from .rows import NA

SCORED_FPS = "images/s (scored run, compute only)"  # not images / wall s: the wall time beside it has the files
COLUMNS = ("Batch Size", "Data set", "IoU (all images)", f"IoU (ModelZoo: images >= {MODELZOO_MIN_IOU})",
           "Dice", "Images", "images/s (pure inference)", SCORED_FPS, "Wall s (scored run)",
           "Backend", "Precision", "Model", "Weights", "Machine")
THROUGHPUT_NOTE = ("images/s = 1000 x batch size / mean compute time of one batch (ms), as ais_bench "
                   "reports it: the model's compute only; host time (reading files, pre- and "
                   "postprocessing, copies to and from the device) is not counted. \"pure inference\" is "
                   "the timing run (`--loop`, no files), the figure to quote; \"scored run, compute only\" "
                   "is the model's compute in the run whose outputs were scored, while its wall time covers "
                   "the whole run, files included (images / wall time is lower).")


def plural(n, word):
    """``"1 row"``, ``"2 rows"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def _number(value, fmt):
    return NA if value is None else format(value, fmt)


def format_row(row):
    """The cells of one table row, formatted (in the order of :data:`COLUMNS`)."""
    return [str(row["batchsize"]), row["data"], f"{row['mean_iou']:.6f}", _number(row["modelzoo_iou"], ".6f"),
            f"{row['mean_dice']:.6f}", str(row["n_images"]), _number(row["perf_fps"], ".2f"),
            f"{row['fps']:.2f}", _number(row["wall_s"], ".1f"), row["backend"], row["precision"],
            row["model"] or NA, row["weights"] or NA, row["machine"]]


def _which(row, rows):
    """``"bs 8"``, and its backend and precision where the rows are of several runs."""
    several = len({r.get("run", "") for r in rows}) > 1
    return f"bs {row['batchsize']}" + (f" {row['backend']} {row['precision']}" if several else "")


def summary_markdown(rows, warning=None, per_image_row=None):
    """The text of summary.md; ``warning`` (mixed weights, listed anyway) goes above the table;
    ``per_image_row``: the row whose scores per_image.csv holds."""
    lines = ["# UNet on Carvana: accuracy and throughput", ""]
    if warning:
        lines += [f"**Warning: {warning}.**", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |",
              "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in format_row(row)) + " |" for row in rows]
    lines += ["", f"Generated {today()} by `python3 -m unet_infer.report`.", "",
              f"- {THROUGHPUT_NOTE}",
              f"- IoU of the car class, mean over all images; the ModelZoo figure leaves out the "
              f"\"difficult\" images whose IoU is below {MODELZOO_MIN_IOU}."]
    below = [f"{_which(r, rows)}: {r['n_below_0_5']}" for r in rows if r["n_below_0_5"]]
    if below:
        lines.append(f"- Images below {MODELZOO_MIN_IOU}: " + ", ".join(below) + ".")
    if per_image_row is not None:
        lines.append(f"- Per-image scores ({_which(per_image_row, rows)}): `per_image.csv`; histogram: `iou_hist.png`; "
                     f"worst and best images: `overlays/`.")
    return "\n".join(lines) + "\n"


def write_summary_md(rows, path, warning=None, per_image_row=None):
    """Write :func:`summary_markdown` to ``path`` atomically; return the path."""
    atomic_write_text(path, summary_markdown(rows, warning, per_image_row))
    return Path(path)


def per_image_csv(records):
    """``name,iou,dice`` per record (6 decimals), then ``mean,<mean iou>,<mean dice>``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "iou", "dice"])
    for record in records:
        writer.writerow([record["name"], f"{record['iou']:.6f}", f"{record['dice']:.6f}"])
    ious = np.array([r["iou"] for r in records], dtype=np.float64)
    dices = np.array([r["dice"] for r in records], dtype=np.float64)
    writer.writerow(["mean", f"{ious.mean():.6f}", f"{dices.mean():.6f}"])
    return buf.getvalue()


def write_per_image_csv(records, path):
    """Write :func:`per_image_csv` to ``path`` atomically; return the path."""
    if not records:
        raise UserError(f"{path}: no per-image records to write")
    atomic_write_text(path, per_image_csv(records))
    return Path(path)
