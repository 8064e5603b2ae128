"""The report's figures, 800 x 500 PNGs drawn by matplotlib's Agg without pyplot: the per-image
IoU histogram and images/s against batch size (also drawn by ``benchmark``)."""

import io
import math
from pathlib import Path

import numpy as np

from ..formats import atomic_write_bytes
from ..results import MODELZOO_MIN_IOU

PLOT_FIGSIZE = (8, 5)
PLOT_DPI = 100  # 800 x 500 pixels, always (no bbox_inches="tight")


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
    fig.tight_layout()
    return _save_figure(fig, out_png)
