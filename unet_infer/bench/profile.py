"""The runner's ``--profile FILE.json``: per-layer times from the backend's own profiler.

    python3 -m unet_infer.bench --model=UNet_bs1.xml --loop=5 --profile=profile_bs1.json

What profiles: onnxruntime (its ``enable_profiling`` trace: the kernel time of each node) and
openvino (the CPU plugin's performance counters, ``PERF_COUNT``); each layer's time is the mean
over the runs after the first (the first one initialises lazily). Which backends profile is their
declaration (``Backend.can_profile``); one without a per-layer profiler (torch) is refused before
the model is loaded (``Backend.check_profile``). The file:

    {"backend", "precision", "model", "batchsize", "runs", "total_ms",
     "layers": [{"name", "type", "ms", "percent", ...}, ...]}   slowest first

and the slowest layers are printed after the Performance Summary. Profiling costs time of its
own: the compute times of a profiled run are not the figures to quote.
"""

import json
import logging
from pathlib import Path

from .. import backends
from ..cli import UserError, os_error
from ..formats import atomic_write_text

log = logging.getLogger(__name__)

SHOWN = 10  # slowest layers printed


def check_profile_target(path, backend_cls):
    """Before any work: the backend can profile and ``path`` is a .json file in an existing folder."""
    backend_cls.check_profile(instead=backends.profilers())
    path = Path(path)
    if path.suffix.lower() != ".json" or path.is_dir():
        raise UserError(f"--profile {path}: expected a .json file name")
    if not path.parent.is_dir():
        raise UserError(f"--profile {path}: folder {path.parent} not found")


def save_profile(path, backend, model):
    """Ask the loaded backend for its per-layer times, write ``path``, return the lines to print:
    the slowest layers, one line each."""
    rows = backend.profile()
    if rows is None:
        log.warning("--profile: the %s backend returned no per-layer times; %s not written", backend.name, path)
        return []
    rows = sorted(rows, key=lambda row: -row["ms"])
    total = sum(row["ms"] for row in rows)
    layers = [dict(row, ms=round(row["ms"], 4), percent=round(100 * row["ms"] / total, 2) if total else 0.0)
              for row in rows]
    runs = backend.profiled_runs
    document = {"backend": backend.name, "precision": backend.precision, "model": str(model),
                "batchsize": backend.batchsize, "runs": runs, "total_ms": round(total, 4), "layers": layers}
    try:
        atomic_write_text(path, json.dumps(document, indent=1) + "\n")
    except OSError as exc:
        raise os_error(path, exc, "write the profile") from None
    log.info("per-layer profile (%d layers) in %s", len(layers), path)
    lines = [f"[INFO] slowest layers ({backend.name} profiler, {f'mean of {runs} run(s)' if runs else 'per run'}, "
             f"{document['total_ms']:.3f} ms in {len(layers)} layers):"]
    for row in layers[:SHOWN]:
        kind = row.get("type", "")
        if row.get("exec_type"):
            kind = f"{kind}, {row['exec_type']}"
        lines.append(f"[INFO]   {row['ms']:10.3f} ms  {row['percent']:5.1f}%  {row['name']} ({kind})")
    return lines
