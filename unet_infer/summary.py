"""The ais_bench ``{output}/{output_dirname}_summary.json`` schema, written and read here only.

Keys (as ais_bench writes them): ``filesinfo`` (``{"0": {"infiles": [...], "outfiles": [...]}}``,
one entry per real input sample, keyed by sample id), ``args``, ``NPU_compute_time``,
``H2D_latency``, ``D2H_latency`` (each ``{min, max, mean, median, "percentile(99%)", count}``
in milliseconds), ``throughput`` (1000 x batchsize / mean compute time) and
``npu_compute_time_list`` and ``pid``.
"""

import json
from pathlib import Path

import numpy as np

from .errors import UserError
from .formats import atomic_write_text

REQUIRED_KEYS = ("filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency",
                 "throughput", "npu_compute_time_list", "pid")
STAT_KEYS = ("min", "max", "mean", "median", "percentile(99%)", "count")


def stats(times_ms):
    """ais_bench's statistics block for a list of times in milliseconds."""
    arr = np.asarray(list(times_ms), dtype=np.float64)
    if arr.size == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    return {"min": float(arr.min()), "max": float(arr.max()), "mean": float(arr.mean()),
            "median": float(np.median(arr)), "percentile(99%)": float(np.percentile(arr, 99)),
            "count": int(arr.size)}


def throughput(batchsize, compute_times_ms):
    """Images per second as ais_bench defines it: 1000 x batchsize / mean compute time (ms)."""
    mean = float(np.mean(compute_times_ms)) if len(compute_times_ms) else 0.0
    return 1000.0 * batchsize / mean if mean > 0 else 0.0


def build_summary(filesinfo, args, compute_times_ms, h2d_ms, d2h_ms, batchsize, pid, extra=None):
    """The summary dict; ``extra`` keys (ours, beyond ais_bench's) are added after its own."""
    summary = {
        "filesinfo": {str(k): {"infiles": [str(p) for p in v["infiles"]],
                               "outfiles": [str(p) for p in v["outfiles"]]}
                      for k, v in filesinfo.items()},
        "args": dict(args),
        "NPU_compute_time": stats(compute_times_ms),
        "H2D_latency": stats(h2d_ms),
        "D2H_latency": stats(d2h_ms),
        "throughput": throughput(batchsize, compute_times_ms),
        "npu_compute_time_list": [float(t) for t in compute_times_ms],
        "pid": int(pid),
    }
    if extra:
        summary.update(extra)
    return summary


def write_summary(path, summary):
    atomic_write_text(path, json.dumps(summary, indent=4, ensure_ascii=False) + "\n")


def read_summary(path):
    """Read and check a summary file; a missing, truncated or foreign file is a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: summary file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: not a valid summary JSON file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("filesinfo"), dict):
        raise UserError(f"{path}: not an ais_bench summary (no 'filesinfo' object)")
    for key, entry in data["filesinfo"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("infiles"), list)
                or not isinstance(entry.get("outfiles"), list)
                or not all(isinstance(p, str) for p in entry["infiles"] + entry["outfiles"])):
            raise UserError(f"{path}: filesinfo entry {key!r} needs 'infiles' and 'outfiles' lists of paths")
    return data


def _stat_line(name, block):
    return (f"[INFO] {name} (ms): min = {block['min']}, max = {block['max']}, mean = {block['mean']}, "
            f"median = {block['median']}, percentile(99%) = {block['percentile(99%)']}")


def performance_lines(summary, batchsize, display_all=False):
    """The Performance Summary block that ais_bench prints, as a list of lines."""
    lines = ["[INFO] -----------------Performance Summary------------------"]
    if display_all:
        lines.append(_stat_line("H2D_latency", summary["H2D_latency"]))
    lines.append(_stat_line("NPU_compute_time", summary["NPU_compute_time"]))
    if display_all:
        lines.append(_stat_line("D2H_latency", summary["D2H_latency"]))
    mean = summary["NPU_compute_time"]["mean"]
    lines.append(f"[INFO] throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean({mean}): "
                 f"{summary['throughput']}")
    lines.append("[INFO] ------------------------------------------------------")
    return lines
