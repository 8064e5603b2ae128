"""The stream at scale: wall time, images/s, peak memory and the resume record's size and cost.

    python3 benchmarks/stream_scale.py                          # 2,000 and 20,000 images, 3 A/B pairs
    python3 benchmarks/stream_scale.py --counts 2000 --repeats 5 --keep --workdir /tmp/scale

Makes, in a new work folder (removed at the end unless --keep), --distinct generated photos
(``unet_infer.sample``, --width x --height) and, per count, a Carvana-layout folder of that many
names hard-linked to them (copied where links fail), masks too; a random UNet of width 4
(seed 0) exported and compiled at --size for a batch of --batchsize (``unet_infer.compile``).
Then runs ``python3 -m unet_infer.stream`` once per count, each in its own process, and reports:

- wall s and images/s: the process from start to exit (imports, model load and warm-up included);
- peak RSS: the stream process's own (``ru_maxrss``), its largest decoder's (``RUSAGE_CHILDREN``
  in that process) and the whole tree's (the sum of their RSS, polled every --poll seconds);
- the record at its largest: its size as the finished run removes it, its units, and the bytes of
  one unit line (the header and attempt lines apart).

The record's cost: after one untimed warm-up run, --repeats pairs at --ab-count images, interleaved
(with the record, then without it), each giving its wall s; the medians, their ranges and the
1-minute load average at each start. "Without" is the same process with the record's append
replaced by a no-op (a hook of this benchmark only: the stream itself has no such switch), so the
record file is opened and removed, nothing is written. The with-record runs also time each
append to the record (the JSON and the write, as the stream pays them), in wall time and in the
calling thread's CPU time (the difference: waits for the GIL, which the decoder pool's result
thread takes while ``append`` writes, or for a busy CPU). --split-sync adds a third
run to each pair, the record written but its background ``fdatasync`` thread never started: the
sync's share of the cost. With two or more counts, the marginal rate between the smallest and the
largest (the start-up left out) and the growth of the memory figures are printed too.

Last, a sizing for Carvana's test set (--target images, batches of --batchsize): the record's size
and the tiny model's time at the measured images/s. The figures are the tiny model's: they show
what the stream and its record cost around a model, not what a full UNet costs.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout: this script and the tools it runs import the package from there
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

from unet_infer import cli  # noqa: E402
from unet_infer.cli import UserError  # noqa: E402

# The stream, run by this benchmark: Journal.append timed (or a no-op: UNET_SCALE_RECORD=0), and
# the record's size taken as the finished run removes it; the figures go to UNET_SCALE_STATS.
CHILD = r"""
import json, os, resource, sys, time
from unet_infer import cli, stream
from unet_infer.journal import Journal
stats = {"append_s": 0.0, "append_cpu_s": 0.0, "appends": 0}
append, remove = Journal.append, Journal.remove
def timed(self, *a, **k):
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        return append(self, *a, **k)
    finally:
        stats["append_s"] += time.perf_counter() - start
        stats["append_cpu_s"] += time.thread_time() - cpu
        stats["appends"] += 1
def measured(self):
    if self.fd is not None and os.fstat(self.fd).st_size:
        with open(self.path, "rb") as fh:
            head = fh.read(4096).split(b"\n")
        stats.update(record_bytes=os.fstat(self.fd).st_size, units=len(self.units),
                     head_bytes=len(head[0]) + len(head[1]) + 2)
    remove(self)
mode = os.environ["UNET_SCALE_RECORD"]  # 1: the record; 0: none; nosync: written, never synced
Journal.append = timed if mode != "0" else (lambda self, *a, **k: True)
if mode == "nosync":
    from unet_infer import journal
    journal._Syncer.run = lambda self: None
Journal.remove = measured
try:
    code = cli.run_cli(stream.main)
finally:
    stats["self_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats["children_kb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(os.environ["UNET_SCALE_STATS"], "w") as fh:
        json.dump(stats, fh)
sys.exit(code)
"""

TARGET_IMAGES = 100_064  # Carvana's test set


def build_parser():
    parser = cli.parser("python3 benchmarks/stream_scale.py", __doc__)
    add = parser.add_argument
    add("--counts", type=cli.int_list, default=[2000, 20000],
        help="image counts of the scale runs, comma-separated")
    add("--ab-count", type=cli.int_at_least(1), default=2000, help="images of each record-cost run")
    add("--repeats", type=cli.int_at_least(0), default=3, help="record-cost pairs (with, without); 0: none")
    add("--warmup", type=cli.int_at_least(0), default=1, help="untimed runs before the pairs")
    add("--distinct", type=cli.int_at_least(1), default=320, help="distinct generated photos the names link to")
    add("--width", type=cli.int_at_least(64), default=96, help="generated photo width, pixels")
    add("--height", type=cli.int_at_least(64), default=64, help="generated photo height, pixels")
    add("--size", type=cli.int_at_least(16), default=32, help="model input height = width")
    add("--batchsize", type=cli.int_at_least(1), default=8, help="the compiled model's batch")
    add("--threads", type=cli.int_at_least(1), default=1, help="the stream's --threads")
    add("--workers", type=cli.int_at_least(1), default=1, help="the stream's --workers (decoders)")
    add("--split-sync", action="store_true",
        help="also a third run per pair: the record written but never synced (fdatasync's share)")
    add("--poll", type=cli.positive_float, default=0.1, help="seconds between RSS samples of the tree")
    add("--target", type=cli.int_at_least(1), default=TARGET_IMAGES, help="images of the sizing line")
    add("--workdir", help="work folder to create (must not exist; without it: a new temporary folder)")
    add("--keep", action="store_true", help="keep the work folder (else removed at the end)")
    return parser


# ---- what the runs need ----------------------------------------------------------------------------

def run_tool(argv, what, log):
    """Run ``python3 -m argv...`` (output to ``log``); a failure is a UserError naming ``what``."""
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, "-m", *argv], stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        raise UserError(f"{what} failed (exit {done.returncode}): {tail(log)}")


def tail(log, lines=3):
    text = Path(log).read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) or "(no output)"


def make_photos(folder, distinct, width, height):
    """``distinct`` generated photos and masks in ``folder`` (train/, train_masks/): ``[(jpg, gif)]``."""
    cars = -(-distinct // 16)
    run_tool(["unet_infer.sample", "--output", str(folder), "--cars", str(cars), "--width", str(width),
              "--height", str(height), "--workers", "1", "--quiet"], "unet_infer.sample", folder.parent / "sample.log")
    images = sorted((folder / "train").glob("*.jpg"))[:distinct]
    return [(image, folder / "train_masks" / f"{image.stem}_mask.gif") for image in images]


def link(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def make_data(folder, count, photos):
    """A Carvana-layout folder of ``count`` names (``<12 hex>_<NN>``) linked to ``photos`` in turn."""
    (folder / "train").mkdir(parents=True)
    (folder / "train_masks").mkdir()
    for i in range(count):
        stem = f"{i // 16:012x}_{i % 16 + 1:02d}"
        image, mask = photos[i % len(photos)]
        link(image, folder / "train" / f"{stem}.jpg")
        link(mask, folder / "train_masks" / f"{stem}_mask.gif")
    return folder


def make_model(folder, size, batchsize):
    """A random UNet(width=4), seed 0, exported at ``size`` and compiled for ``batchsize``."""
    import torch
    from unet_infer.export import export_model
    from unet_infer.model import UNet
    torch.manual_seed(0)
    model = UNet(width=4).eval()
    export_model(model, folder / "tiny.onnx", size=size)
    compiled = folder / f"tiny_bs{batchsize}.onnx"
    run_tool(["unet_infer.compile", "--model", str(folder / "tiny.onnx"), "--batchsize", str(batchsize),
              "--size", str(size), "--threads", "1", "--output", str(compiled)], "unet_infer.compile",
             folder / "compile.log")
    return compiled


# ---- one run ---------------------------------------------------------------------------------------

def tree_rss_kb(pid):
    """The summed VmRSS (KB) of ``pid`` and its descendants now (0 for what has gone)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run_stream(args, model, data, work, record="1"):
    """One stream run in its own process; its figures (wall s, images/s, memory, the record's)."""
    work.mkdir(parents=True, exist_ok=True)
    stats, log = work / "stats.json", work / "stream.log"
    argv = [sys.executable, "-c", CHILD, "--model", str(model), "--data", str(data), "--size", str(args.size),
            "--threads", str(args.threads), "--workers", str(args.workers), "--quiet",
            "--result", str(work / "result.txt")]
    env = dict(os.environ, UNET_SCALE_RECORD=record, UNET_SCALE_STATS=str(stats))
    load, peak = os.getloadavg()[0], 0
    with open(log, "w") as fh:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=env)
        while child.poll() is None:
            peak = max(peak, tree_rss_kb(child.pid))
            time.sleep(args.poll)
        wall = time.perf_counter() - start
    if child.returncode:
        raise UserError(f"the stream failed on {data} (exit {child.returncode}): {tail(log)}")
    found = json.loads(stats.read_text())
    images = sum(1 for _ in (Path(data) / "train").iterdir())
    return {"images": images, "wall_s": wall, "images_s": images / wall, "load": load,
            "self_mb": found["self_kb"] / 1024, "decoder_mb": found["children_kb"] / 1024,
            "tree_mb": peak / 1024, **{k: found[k] for k in ("append_s", "append_cpu_s", "appends")},
            **{k: found.get(k) for k in ("record_bytes", "units", "head_bytes")}}


def unit_bytes(run):
    """Mean bytes of one unit line of the run's record (None without one)."""
    if not run.get("units"):
        return None
    return (run["record_bytes"] - run["head_bytes"]) / run["units"]


# ---- the report -------------------------------------------------------------------------------------

def scale_line(run):
    per_unit = unit_bytes(run)
    record = (f"record {run['record_bytes']:,} B, {run['units']:,} units, {per_unit:.1f} B/unit"
              if per_unit else "record: none")
    return (f"scale {run['images']:,} images: {run['wall_s']:.2f} s, {run['images_s']:.1f} images/s, "
            f"peak RSS {run['self_mb']:.1f} MB stream, {run['decoder_mb']:.1f} MB largest decoder, "
            f"{run['tree_mb']:.1f} MB tree; {record}; append {1e6 * run['append_s'] / max(run['appends'], 1):.1f} "
            f"us/unit; load {run['load']:.2f}")


def spread(values):
    return f"{statistics.median(values):.3f} s (range {min(values):.3f}-{max(values):.3f})"


def cost_lines(pairs):
    """The record's cost from ``[(with, without), ...]`` runs."""
    on = [a["wall_s"] for a, _ in pairs]
    off = [b["wall_s"] for _, b in pairs]
    diff = [a - b for a, b in zip(on, off)]
    count = max(sum(a["appends"] for a, _ in pairs), 1)
    appends = sum(a["append_s"] for a, _ in pairs) / count
    cpu = sum(a["append_cpu_s"] for a, _ in pairs) / count
    loads = [r["load"] for pair in pairs for r in pair]
    share = 100 * statistics.median(diff) / statistics.median(off)
    return [f"record cost, {len(pairs)} pair(s) at {pairs[0][0]['images']:,} images: with {spread(on)}, "
            f"without {spread(off)}; paired difference median {statistics.median(diff):+.3f} s "
            f"({share:+.1f} %, range {min(diff):+.3f} to {max(diff):+.3f}); load {statistics.median(loads):.2f} "
            f"(max {max(loads):.2f})",
            f"record cost, timed inside the runs: {1e6 * appends:.1f} us per Journal.append (unit of "
            f"{pairs[0][0]['images'] // max(pairs[0][0]['appends'], 1)} images or fewer), of which "
            f"{1e6 * cpu:.1f} us its thread's CPU time (the rest: waiting for the GIL or the CPU)"]


def sizing_line(run, pairs, target, batchsize):
    units = -(-target // batchsize)
    per_unit = unit_bytes(run)
    hours = target / run["images_s"] / 3600
    appends = (sum(a["append_s"] for a, _ in pairs) / max(sum(a["appends"] for a, _ in pairs), 1)
               if pairs else run["append_s"] / max(run["appends"], 1))
    record = f"record {run['head_bytes'] + units * per_unit:,.0f} B" if per_unit else "record: not measured"
    return (f"sizing {target:,} images = {units:,} batches of {batchsize}: {record} "
            f"({per_unit or 0:.1f} B/unit x {units:,}); appends {units * appends:.2f} s in all; "
            f"tiny model at {run['images_s']:.1f} images/s: {hours * 60:.1f} min")


def benchmark(args, root):
    """Make the photos, data folders and model under ``root``, run, print the figures."""
    from unet_infer.machine import describe_machine
    print(f"machine: {describe_machine()}", flush=True)
    photos = make_photos(root / "photos", args.distinct, args.width, args.height)
    model = make_model(root, args.size, args.batchsize)
    counts = sorted(set(args.counts) | ({args.ab_count} if args.repeats else set()))
    data = {count: make_data(root / f"data_{count}", count, photos) for count in counts}
    print(f"data: {len(photos)} distinct {args.width}x{args.height} photos under {', '.join(map(str, counts))} "
          f"names; model: UNet width 4, size {args.size}, batch {args.batchsize}; --threads {args.threads} "
          f"--workers {args.workers}", flush=True)
    runs = {}
    for count in args.counts:
        runs[count] = run_stream(args, model, data[count], root / f"run_{count}")
        print(scale_line(runs[count]), flush=True)
    if len(runs) > 1:
        low, high = runs[min(runs)], runs[max(runs)]
        print(f"marginal rate {min(runs):,} -> {max(runs):,} images: "
              f"{(high['images'] - low['images']) / (high['wall_s'] - low['wall_s']):.1f} images/s; "
              f"tree RSS {high['tree_mb'] - low['tree_mb']:+.1f} MB, largest decoder "
              f"{high['decoder_mb'] - low['decoder_mb']:+.1f} MB", flush=True)
    pairs = []
    if args.repeats:
        for i in range(args.warmup):
            run_stream(args, model, data[args.ab_count], root / f"warmup_{i}")
        unsynced = []
        for i in range(args.repeats):
            pairs.append((run_stream(args, model, data[args.ab_count], root / f"with_{i}"),
                          run_stream(args, model, data[args.ab_count], root / f"without_{i}", record="0")))
            if args.split_sync:
                unsynced.append(run_stream(args, model, data[args.ab_count], root / f"nosync_{i}", record="nosync"))
        for line in cost_lines(pairs):
            print(line, flush=True)
        if unsynced:
            print(f"record written, never synced (diagnostic): {spread([r['wall_s'] for r in unsynced])}; "
                  f"{1e6 * sum(r['append_s'] for r in unsynced) / sum(r['appends'] for r in unsynced):.1f} "
                  f"us per Journal.append", flush=True)
    print(sizing_line(runs[max(args.counts)], pairs, args.target, args.batchsize), flush=True)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.workdir:
        root = Path(args.workdir)
        try:
            root.mkdir(parents=True)
        except FileExistsError:
            raise UserError(f"{root}: --workdir must not exist (this benchmark makes and removes it)") from None
        except OSError as exc:
            raise cli.os_error(root, exc, "create") from None
    else:
        root = Path(tempfile.mkdtemp(prefix="unet_scale_"))
    try:
        benchmark(args, root)
    finally:
        if args.keep:
            print(f"kept: {root}", flush=True)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
