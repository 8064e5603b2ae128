"""``--device 0,1``: one process per device, as ais_bench runs them (docs/cluster.md). The input files
are cut into contiguous shards at whole batches (only the last device may pad); each device's summary
goes to ``{output}/{output_dirname}_device{d}_summary.json``, the merged one to the run's summary. On
the CPU a device is a process with ``--threads`` / N threads (pure inference has nothing to divide).
"""
import contextlib
import io
import logging
import multiprocessing
import os
import time
from argparse import Namespace

from ..cli import UserError
from ..progress import set_quiet
from ..summary import merge_summaries, merged_lines, with_keys, write_summary
from ..workdir import run_paths
from ..loop import Timings
from .files import list_inputs
from .run import bench, make_dirs, run_place, say_left, unfinished_marker

log = logging.getLogger(__name__)


def shard_bounds(n_files, n_devices, per_batch):
    """``[(start, stop), ...]``: contiguous shards, as even as whole batches allow."""
    n_batches = -(-n_files // per_batch)
    cuts = [min(n_files, round(i * n_batches / n_devices) * per_batch) for i in range(n_devices + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def shard_unit(args, backend_cls):
    """The files a shard is cut at multiples of: ``--batchsize``, else the model file's own, else 1."""
    return args.batchsize or backend_cls.fixed_batchsize(args.model) or 1


def device_places(args, devices):
    """``(output folder, merged summary, [per-device summary])``; all None without --output."""
    if not args.output:
        return None, None, [None] * len(devices)
    base, merged = run_place(args)
    per_device = [run_paths(args.output, f"{base.name}_device{d}")[1] for d in devices]
    for path in per_device:
        if path.exists():
            raise UserError(f"{path} already holds a run; choose another --output_dirname")
    return base, merged, per_device


def _run_device(args, choice, device, out_dir, summary_path, shard, label):
    """One device's run in its own process: its summary, copy times and printout (the parent prints it)."""
    logging.basicConfig(level=logging.INFO, format=f"[%(levelname)s] {label}: %(message)s")
    set_quiet(True)  # N progress bars on one terminal would only garble each other
    timings, printed = Timings(), io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = bench(args, choice, device, out_dir, inputs=shard, timings=timings)
    with_keys(summary, device_label=label)
    if summary_path:
        write_summary(summary_path, summary)
    return summary, timings.h2d, timings.d2h, printed.getvalue()


def run_devices(args, choice):
    """Run every device of ``args.device`` at once, merge, print, write; the merged summary."""
    started = time.perf_counter()
    backend_cls = choice.cls
    devices = list(args.device)
    listing = ",".join(map(str, devices))
    on_gpu = backend_cls.has_gpu()
    threads = args.threads
    if not on_gpu:
        if not args.input:
            raise UserError(f"--device {listing}: one run per device needs GPUs for pure inference; the "
                            f"{backend_cls.name} backend runs on the CPU here, where several devices mean "
                            f"shards of the --input files (give --input, or one device)")
        threads = max(1, args.threads // len(devices))
        log.info("--device %s on the CPU: %d shards of the inputs, %d thread(s) each (--threads %d split)",
                 listing, len(devices), threads, args.threads)
    inputs = list_inputs(args.input) if args.input else None
    out_dir, merged_path, per_device = device_places(args, devices)
    shards = [None] * len(devices)
    if inputs:
        bounds = shard_bounds(len(inputs[0]), len(devices), shard_unit(args, backend_cls))
        shards = [[files[a:b] for files in inputs] for a, b in bounds]
    jobs = []
    for device, shard, summary_path in zip(devices, shards, per_device):
        if shard is not None and not shard[0]:
            log.warning("device %d gets no input files (%d files, fewer batches than devices)", device,
                        len(inputs[0]))
            continue
        child = Namespace(**vars(args))
        child.threads, child.device = threads, [device]
        jobs.append((child, choice, device, out_dir, summary_path, shard, f"device_{device}"))
    if out_dir:
        make_dirs(out_dir)
    context = multiprocessing.get_context("spawn")  # a clean process per device: no forked framework state
    try:
        with context.Pool(len(jobs)) as pool:
            results = pool.starmap(_run_device, jobs)
    except KeyboardInterrupt:
        say_left(out_dir)
        raise
    parts = [summary for summary, _, _, _ in results]
    for _, _, _, printed in results:
        print(printed, end="", flush=True)
    merged = merge_summaries(parts, vars(args), [t for r in results for t in r[1]], [t for r in results for t in r[2]],
                             time.perf_counter() - started, os.getpid(),
                             extra={**{key: parts[0][key] for key in ("backend", "precision", "machine", "mode",
                                                                        "model", "weights") if key in parts[0]},
                                    "device_kind": "gpu" if on_gpu else "cpu shards"})
    if merged_path:
        write_summary(merged_path, merged)
        unfinished_marker(out_dir).unlink(missing_ok=True)
        log.info("outputs in %s, merged summary %s, per device %s", out_dir, merged_path,
                 ", ".join(str(p) for p in per_device))
    for line in merged_lines(merged, blocks=False):
        print(line, flush=True)
    return merged
