"""The ais_bench ``{output}/{output_dirname}_summary.json`` schema: built, written, read and
queried here only (other modules ask the accessors below, never the raw keys).

ais_bench's keys (:data:`REQUIRED_KEYS`): ``filesinfo`` (``{"0": {"infiles": [...], "outfiles":
[...]}}``, one entry per real input sample), ``args``, ``NPU_compute_time``, ``H2D_latency``,
``D2H_latency`` (each ``{min, max, mean, median, "percentile(99%)", count}`` in ms; we add
``percentile(90%)`` and ``percentile(95%)``), ``throughput`` (1000 x batchsize / mean compute
time), ``npu_compute_time_list`` and ``pid``. Every other key is ours, after those, and documented
in :data:`KEYS` (:func:`with_keys` refuses any other). A resumed run's times cover every batch,
whichever attempt ran it; a run split over devices or Ray actors has one summary per part and one
merged summary (:func:`merge_summaries`) in the same schema; a throughput-mode run (openvino
``--nireq N``) keeps ``NPU_compute_time`` as each request's own time, start to finish.
"""

import json
from pathlib import Path

import numpy as np

from .cli import UserError, os_error
from .formats import atomic_path, natural_key
from .results import Streamed, read_json_object

REQUIRED_KEYS = ("filesinfo", "args", "NPU_compute_time", "H2D_latency", "D2H_latency",
                 "throughput", "npu_compute_time_list", "pid")
PERCENTILES = (50, 90, 95, 99)

KEYS = {  # ours, after REQUIRED_KEYS: every other key a summary may hold, and what it means
    "batchsize": "images per model run (the model's batch; a short last batch is padded)",
    "backend": "the backend that ran the model (backends.REGISTRY)",
    "precision": "what the model computed in, as the backend found it (fp32, bf16, int8, fp16)",
    "machine": "CPU (vector units), cores and the GPU the run used, in words (machine.describe_machine)",
    "model": "the model file, absolute path",
    "weights": "the checkpoint the model was made from, '<name> sha256:<16 hex>' (None: unknown)",
    "mode": "files (the runner on --input), pure (generated data), stream, or cluster (Ray)",
    "wall_s": "seconds of the whole run (of this attempt, for a resumed run)",
    "file_read_ms": "runner: reading the input files, ms in all (not in the compute time)",
    "file_write_ms": "runner: writing the output files, ms in all (not in the compute time)",
    "e2e_latency": "runner on files: end-to-end ms per batch of the written pass, from the previous batch "
                   "written to this one (its reading, copies, --loop runs and writing), statistics as "
                   "NPU_compute_time's",
    "decode_wait_ms": "stream: the model's wait for decoded images, ms in all (of this attempt, for a resumed "
                      "run)",
    "attempts": "stream, cluster: the runs that scored the batches, this one included (1: never stopped)",
    "resumed_images": "stream, cluster: images whose scores came from earlier attempts' record",
    "images_this_attempt": "cluster, resumed: images this attempt scored (its wall_throughput's count)",
    "nireq": "throughput mode: runs in flight",
    "nireq_loop_ms": "throughput mode: wall-clock ms of the timed loop",
    "nireq_throughput": "throughput mode: images/s the requests delivered together",
    "devices": "merged: each part's summary without filesinfo, with n_images",
    "n_images": "a part of a merged summary: its real images",
    "device_label": "a part of a merged summary: device_<id>, or a Ray actor's host:actor-<id>",
    "summary_throughput": "merged: the sum of the parts' throughputs (ais_bench's summary throughput)",
    "wall_throughput": "merged: real images / wall_s (of this attempt's images, for a resumed cluster run)",
    "device_kind": "runner, --device 0,1: gpu (one run per GPU) or cpu shards (the inputs split on the CPU)",
    "cluster": "cluster: {address, actors, threads, gpus_per_actor, restarts, replaced_actors, lost_nodes, "
               "rounds, resumed_batches, ray_start_s, duplicates_dropped}",
    "node": "cluster, per actor: the host it ran on",
    "device": "cluster, per actor: cpu or cuda:N",
    "pids": "cluster, per actor: the processes that ran it (more than one after a restart)",
    "node_ids": "cluster, per actor: the Ray nodes it ran on",
    "restarts": "cluster, per actor: how often Ray restarted its process",
}


def with_keys(summary, **keys):
    """``summary`` with ``keys`` (each documented in :data:`KEYS`) set; the same dict."""
    unknown = [key for key in keys if key not in KEYS and key not in REQUIRED_KEYS]
    if unknown:
        raise ValueError(f"summary keys {unknown} are not documented in summary.KEYS")
    summary.update(keys)
    return summary


def stats(times_ms):
    """ais_bench's statistics block for a list of times in milliseconds (plus p90 and p95; zeros for none)."""
    arr = np.asarray(list(times_ms), dtype=np.float64)
    count = arr.size
    if not count:
        arr = np.zeros(1)
    p99, p90, p95 = np.percentile(arr, [99, 90, 95])
    return {"min": float(arr.min()), "max": float(arr.max()), "mean": float(arr.mean()),
            "median": float(np.median(arr)), "percentile(99%)": float(p99), "count": count,
            "percentile(90%)": float(p90), "percentile(95%)": float(p95)}


def build_summary(filesinfo, args, compute_times_ms, h2d_ms, d2h_ms, batchsize, pid, extra=None):
    """The summary dict, ``extra`` keys after ais_bench's; a ``results.Streamed`` filesinfo is kept as it
    is (written as it is read)."""
    compute = stats(compute_times_ms)
    summary = {
        "filesinfo": filesinfo if isinstance(filesinfo, Streamed) else {
            str(k): {"infiles": [str(p) for p in v["infiles"]], "outfiles": [str(p) for p in v["outfiles"]]}
            for k, v in filesinfo.items()},
        "args": {k: (v if isinstance(v, (str, int, float, bool, list, type(None))) else str(v))
                 for k, v in dict(args).items()},
        "NPU_compute_time": compute,
        "H2D_latency": stats(h2d_ms),
        "D2H_latency": stats(d2h_ms),
        "throughput": 1000.0 * batchsize / compute["mean"] if compute["mean"] > 0 else 0.0,
        "npu_compute_time_list": [float(t) for t in compute_times_ms],
        "pid": int(pid),
        "batchsize": int(batchsize),
    }
    return with_keys(summary, **(extra or {}))


def merge_summaries(parts, args, h2d_ms, d2h_ms, wall_s, pid, extra=None, filesinfo=None):
    """One summary for a run split over devices or actors (``parts``: their :func:`build_summary` dicts):
    ``filesinfo`` every part's samples in input order (the natural order of their first input file,
    unless the caller gives it), the compute times of every batch of every part (``throughput``: one
    device's rate), the H2D and D2H times given, then ``devices``, ``summary_throughput``,
    ``wall_throughput``, ``wall_s`` and ``extra``."""
    if filesinfo is None:
        entries = [entry for part in parts for entry in part["filesinfo"].values()]
        entries.sort(key=lambda entry: natural_key(entry["infiles"][0]) if entry["infiles"] else [])
        filesinfo = dict(enumerate(entries))
    compute = [t for part in parts for t in part["npu_compute_time_list"]]
    bs = batchsize(parts[0]) or 1
    merged = build_summary(filesinfo, args, compute, h2d_ms, d2h_ms, bs, pid)
    return with_keys(merged, devices=[dict({k: v for k, v in part.items() if k != "filesinfo"},
                                           n_images=len(part["filesinfo"])) for part in parts],
                     summary_throughput=float(sum(throughput(part) for part in parts)),
                     wall_throughput=len(filesinfo) / wall_s if filesinfo and wall_s > 0 else None,  # None: pure inference
                     wall_s=float(wall_s), **(extra or {}))


def in_flight_keys(requests, batchsize, runs, loop_ms):
    """The keys of a throughput-mode run (``requests`` > 0 runs in flight), ``{}`` for any other run."""
    if not requests or not loop_ms:
        return {}
    return {"nireq": int(requests), "nireq_loop_ms": float(loop_ms),
            "nireq_throughput": 1000.0 * batchsize * runs / loop_ms}


def write_summary(path, summary):
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=4, ensure_ascii=False)  # entry by entry: a long filesinfo too
            fh.write("\n")
    except OSError as exc:
        raise os_error(path, exc, "write the summary") from None


def read_summary(path):
    """Read and check a summary file; a missing, truncated or foreign file is a :class:`UserError`."""
    data = read_json_object(path, "summary")
    if not isinstance(data.get("filesinfo"), dict):
        raise UserError(f"{path}: not an ais_bench summary (no 'filesinfo' object)")
    for key, entry in data["filesinfo"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("infiles"), list)
                or not isinstance(entry.get("outfiles"), list)
                or not all(isinstance(p, str) for p in entry["infiles"] + entry["outfiles"])):
            raise UserError(f"{path}: filesinfo entry {key!r} needs 'infiles' and 'outfiles' lists of paths")
    compute = data.get("NPU_compute_time")
    if not isinstance(compute, dict) or not isinstance(compute.get("mean"), (int, float)):
        raise UserError(f"{path}: not an ais_bench summary (no NPU_compute_time statistics)")
    if not isinstance(data.get("throughput"), (int, float)):
        raise UserError(f"{path}: not an ais_bench summary (no numeric 'throughput')")
    return data


# ---- accessors: what a run was, as its summary records it (None: not recorded) ---------------

def _text(key):
    """The accessor of a text key (None where absent or empty: a summary of another tool)."""
    def value(summary):
        found = summary.get(key)
        return found if isinstance(found, str) and found else None
    return value


def _number(key):
    """The accessor of a numeric key, as a float."""
    def value(summary):
        found = summary.get(key)
        return float(found) if isinstance(found, (int, float)) else None
    return value


backend = _text("backend")
precision = _text("precision")  # as the runner found it
machine = _text("machine")
model = _text("model")
weights = _text("weights")  # "<name> sha256:<16 hex>"
wall_s = _number("wall_s")
summary_throughput = _number("summary_throughput")  # a merged summary's: the sum of its parts' throughputs
wall_throughput = _number("wall_throughput")  # real images per second of wall time over the whole run


def throughput(summary):
    """images/s: 1000 x batch size / mean compute time of one batch (ms)."""
    return float(summary["throughput"])


def compute_ms(summary):
    """The mean compute time of one batch, ms."""
    return float(summary["NPU_compute_time"]["mean"])


def percentile_ms(summary, p):
    """The p-th percentile of one batch's compute time (p50: the median; p90, p95: ours, beside p99)."""
    block = summary["NPU_compute_time"]
    return float(block["median"] if p == 50 else block[f"percentile({p}%)"])


def batchsize(summary):
    value = summary.get("batchsize")
    if isinstance(value, int) and value > 0:
        return value
    args = summary.get("args")
    value = args.get("batchsize") if isinstance(args, dict) else None
    return value if isinstance(value, int) and value > 0 else None


def filesinfo_entries(summary):
    """``[(sample id, {"infiles": [...], "outfiles": [...]}), ...]`` in natural order of the id."""
    return sorted(summary["filesinfo"].items(), key=lambda item: natural_key(item[0]))


def image_count(summary):
    """Real images the run processed (padding excluded)."""
    return len(summary["filesinfo"])


def device_summaries(summary):
    """The parts of a merged summary (one per device or actor), ``[]`` for a single-device run."""
    value = summary.get("devices")
    return [part for part in value if isinstance(part, dict)] if isinstance(value, list) else []


# ---- the printout ------------------------------------------------------------------------------

def _stat_line(name, block):
    return (f"[INFO] {name} (ms): min = {block['min']}, max = {block['max']}, mean = {block['mean']}, "
            f"median = {block['median']}, percentile(99%) = {block['percentile(99%)']}")


def performance_lines(summary, display_all=False):
    """The Performance Summary block that ais_bench prints, as a list of lines (plus a percentile line)."""
    bs = batchsize(summary) or 1
    lines = ["[INFO] -----------------Performance Summary------------------"]
    if display_all:
        lines.append(_stat_line("H2D_latency", summary["H2D_latency"]))
    lines.append(_stat_line("NPU_compute_time", summary["NPU_compute_time"]))
    if display_all:
        lines.append(_stat_line("D2H_latency", summary["D2H_latency"]))
    mean = summary["NPU_compute_time"]["mean"]
    lines.append(f"[INFO] throughput 1000*batchsize.mean({bs})/NPU_compute_time.mean({mean}): "
                 f"{summary['throughput']}")
    if summary["NPU_compute_time"].get("count"):  # ours, after ais_bench's own lines
        cells = ", ".join(f"p{p} = {percentile_ms(summary, p):.3f}" for p in PERCENTILES)
        lines.append(f"[INFO] NPU_compute_time percentiles (ms): {cells}")
    if isinstance(summary.get("e2e_latency"), dict) and summary["e2e_latency"].get("count"):
        lines.append(_stat_line("e2e_latency", summary["e2e_latency"]) + " (per batch: reading, copies and "
                     "writing included)")
    if isinstance(summary.get("nireq_throughput"), (int, float)) and isinstance(summary.get("nireq"), int):
        lines.append(f"[INFO] throughput with {summary['nireq']} requests in flight (wall clock, "
                     f"{summary['nireq_loop_ms'] / 1000:.3f} s): {float(summary['nireq_throughput'])}")
    lines.append("[INFO] ------------------------------------------------------")
    return lines


def merged_lines(summary, blocks=True):
    """A merged run's printout: each part's Performance Summary (as ais_bench prints one per device;
    ``blocks=False``: left out), ais_bench's per-device throughput lines and ``summary throughput``,
    then the wall-clock rate."""
    lines = []
    parts = device_summaries(summary)
    for part in parts if blocks else []:
        lines += performance_lines(part)
    for i, part in enumerate(parts):
        lines.append(f"i:{i} {part.get('device_label', f'device_{i}')} throughput:{part['throughput']}")
    lines.append(f"[INFO] summary throughput:{summary_throughput(summary)}")
    if wall_throughput(summary) is not None:
        lines.append(f"[INFO] wall-clock throughput: {image_count(summary)} images / {wall_s(summary):.3f} s = "
                     f"{wall_throughput(summary):.3f} images/s ({len(parts)} device(s) or actor(s), whole run)")
    return lines
