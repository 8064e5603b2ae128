"""One run of the runner on one device (``bench``), the checks of the output folder it writes to, and
``--profile FILE.json``: per-layer times from the backend's own profiler, each layer's the mean over the
runs after the first (which initialises lazily), the slowest first (ten of them printed):

    {"backend", "precision", "model", "batchsize", "runs", "total_ms",
     "layers": [{"name", "type", "ms", "percent", ...}, ...]}

Profiling costs time of its own: the compute times of a profiled run are not the figures to quote.
"""

import glob
import itertools
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np

from .. import backends
from ..cli import UserError, os_error
from ..formats import atomic_write_text, inside
from ..progress import progress
from ..loop import Timings, run_loop
from ..summary import build_summary, in_flight_keys, performance_lines, stats, write_summary
from ..workdir import run_paths
from .files import OUTFMT_SUFFIX, OutputWriter, file_feeds, list_inputs, output_name, plan_batches, \
    plan_files_per_batch, pure_data

log = logging.getLogger(__name__)

CV_LIMIT = 0.10  # run-to-run spread of the compute time above which the runner warns
SHOWN = 10  # slowest layers printed


def unfinished_marker(out_dir):
    """``{output}/.{output_dirname}.unfinished``: there from the folder's making until the summary."""
    return out_dir.parent / f".{out_dir.name}.unfinished"


def _leftovers(out_dir, input_spec, outfmt):
    """The files in ``out_dir`` if each is an output (or its temporary file) of these inputs, else None."""
    files = list(out_dir.iterdir()) if out_dir.is_dir() else []
    stems = {path.stem for path in list_inputs(input_spec)[0]} if input_spec else set()
    for path in files:
        name = re.sub(r"^\.(.+)\.[^.]+\.tmp$", r"\1", path.name)  # formats.atomic_path's temporary name
        match = re.fullmatch(r"(.+)_\d+\.([a-z]+)", name)
        if not (path.is_file() and match and match[1] in stems and match[2] == OUTFMT_SUFFIX[outfmt]):
            return None
    return files


def refuse_existing_run(out_dir, summary_path, input_spec=None, outfmt="BIN"):
    """Never mix two runs: a folder with files in it, or a summary, is refused; a run this runner left
    unfinished (its marker, no summary) of these inputs is replaced, per-device summaries included."""
    if unfinished_marker(out_dir).exists() and not summary_path.exists():
        files = _leftovers(out_dir, input_spec, outfmt)
        if files is None:
            raise UserError(f"{out_dir} holds an unfinished run of other inputs or another --outfmt; choose "
                            f"another --output_dirname, or remove {out_dir} and {unfinished_marker(out_dir)}")
        for path in files:
            path.unlink()
        if files:
            log.info("%s: replacing the unfinished run left there (%d output files removed)", out_dir, len(files))
        pattern = run_paths(out_dir.parent, f"{glob.escape(out_dir.name)}_device*")[1]
        for path in pattern.parent.glob(pattern.name):
            path.unlink()
    elif summary_path.exists() or (out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))):
        raise UserError(f"{out_dir} already holds a run; choose another --output_dirname, or leave it out "
                        f"for a new timestamped folder (as ais_bench does)")


def run_place(args):
    """``(output folder, summary path)``, checked; ``(None, None)`` without --output."""
    if not args.output:
        return None, None
    dirname = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
    if inside(args.output, dirname) is None:
        raise UserError(f"--output_dirname {dirname!r} must be a plain folder name")
    out_dir, summary_path = run_paths(args.output, dirname)
    if args.input:
        for folder in (Path(p).resolve() for p in args.input.split(",") if p):  # the next run would read them
            if folder.is_dir() and (out_dir.resolve() == folder or folder in out_dir.resolve().parents):
                raise UserError(f"{out_dir}: inside the input folder {folder}; write the outputs elsewhere")
        named = {}
        for path in list_inputs(args.input)[0]:
            name = output_name(path, 0, args.outfmt)
            if name in named:
                raise UserError(f"{named[name]} and {path} would write the same output files")
            named[name] = path
    refuse_existing_run(out_dir, summary_path, args.input, args.outfmt)
    return out_dir, summary_path


def make_dirs(out_dir):
    """Make the output folder, marked unfinished until the summary."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(unfinished_marker(out_dir), "a run of python3 -m unet_infer.bench writes here; "
                                                     "the same command replaces it if it was stopped\n")
    except OSError as exc:
        raise os_error(out_dir, exc, "create the output folder") from None


def say_left(out_dir):
    """At Ctrl-C: one line saying what the stopped run left and what to do."""
    if out_dir is not None and out_dir.is_dir():
        n = sum(1 for path in out_dir.iterdir() if not path.name.startswith("."))
        log.warning("%s: stopped with %d output file(s) written and no summary; the same command replaces "
                    "them, or remove the folder", out_dir, n)


def io_line(kind, tensors):
    """``model inputs: actual_input_1 float32 8x3x572x572`` of ``(name, shape, dtype)``."""
    return f"model {kind}: " + "; ".join(f"{name} {np.dtype(dtype).name} {'x'.join(map(str, shape))}"
                                          for name, shape, dtype in tensors)


def log_outputs(outputs):
    log.info("%s", io_line("outputs", [(f"output {k}", out.shape, out.dtype) for k, out in enumerate(outputs)]))


def run_files(args, opened, inputs, out_dir, timings):
    """Every batch, ``--loop`` runs each (``--time``: more passes, not written); the filesinfo. A batch's
    end-to-end time (``timings.e2e``) runs from the previous batch written (the first: its reading) to its own."""
    backend = opened.backend
    per_batch = plan_files_per_batch(inputs, backend.inputs)
    batches = plan_batches(len(inputs[0]), per_batch)
    log.info("%d files, %d per batch, %d batches", len(inputs[0]), per_batch, len(batches))
    feeds = file_feeds(batches, inputs, backend.inputs, per_batch, timings)
    reading = time.perf_counter()
    first = next(feeds)
    first_read = time.perf_counter() - reading
    opened.warm_up(first[0], args.warmup_count)
    if out_dir:
        make_dirs(out_dir)
    writer = OutputWriter(inputs, per_batch, out_dir, args.outfmt, timings)
    with progress(total=None if args.time else len(batches), desc="Inference", unit="batch") as bar:
        started = time.perf_counter()
        last = [started - first_read]

        def sink(batch, outputs):
            if not timings.e2e:
                log_outputs(outputs)
            writer(batch, outputs)
            now = time.perf_counter()
            timings.e2e.append((now - last[0]) * 1000.0)
            last[0] = now
            bar.update(1)

        run_loop(backend, itertools.chain([first], feeds), sink, timings, loop=args.loop)
        while args.time and time.perf_counter() - started < args.time:  # more passes until then
            run_loop(backend, file_feeds(batches, inputs, backend.inputs, per_batch, timings),
                     lambda batch, outputs: bar.update(1), timings, loop=args.loop)
    log.info("file reading %.1f ms, output writing %.1f ms (not in the compute time)",
             timings.read_ms, timings.write_ms)
    return writer.filesinfo


def run_pure(args, opened, out_dir, timings):
    """``--loop`` runs (``--time``: more until then) on generated data; nothing but the summary is saved."""
    backend = opened.backend
    arrays = [pure_data(spec, args.pure_data_type, np.random.default_rng()) for spec in backend.inputs]
    opened.warm_up(arrays, args.warmup_count)
    if out_dir:
        make_dirs(out_dir)
    with progress(total=None if args.time else args.loop, desc="Inference", unit="run") as bar:
        started = time.perf_counter()
        run_loop(backend, [(arrays, None)], lambda tag, outputs: log_outputs(outputs), timings, loop=args.loop,
                 on_run=lambda: bar.update(1))
        while args.time and time.perf_counter() - started < args.time:
            run_loop(backend, [(arrays, None)], lambda tag, outputs: None, timings, loop=args.loop,
                     on_run=lambda: bar.update(1))
    return {}


def check_profile_target(path, backend_cls):
    """Before any work: the backend can profile and ``path`` is a .json file in an existing folder."""
    if not backend_cls.can_profile:
        raise UserError(f"--profile: the {backend_cls.name} backend has no per-layer profiler here; profile the "
                        f"ONNX model with --backend {' or '.join(backends.profilers())}")
    path = Path(path)
    if path.suffix.lower() != ".json" or path.is_dir():
        raise UserError(f"--profile {path}: expected a .json file name")
    if not path.parent.is_dir():
        raise UserError(f"--profile {path}: folder {path.parent} not found")


def save_profile(path, backend, model):
    """Write the loaded backend's per-layer times to ``path``; the lines to print, the slowest layers."""
    rows, runs = backend.profile()
    rows = sorted(rows, key=lambda row: -row["ms"])
    total = sum(row["ms"] for row in rows)
    layers = [dict(row, ms=round(row["ms"], 4), percent=round(100 * row["ms"] / total, 2) if total else 0.0)
              for row in rows]
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
        kind = f"{row['type']}, {row['exec_type']}" if row["exec_type"] else row["type"]
        lines.append(f"[INFO]   {row['ms']:10.3f} ms  {row['percent']:5.1f}%  {row['name']} ({kind})")
    return lines


def spread_warning(compute_ms):
    """The warning that the compute times vary too much to quote (trtexec's std / mean), or None."""
    if len(compute_ms) < 2 or np.mean(compute_ms) <= 0:
        return None
    cv = float(np.std(compute_ms) / np.mean(compute_ms))
    if cv <= CV_LIMIT:
        return None
    return (f"the compute time varies by {100 * cv:.0f}% run to run (coefficient of variation, above "
            f"{100 * CV_LIMIT:.0f}%): for figures to quote, give more --warmup_count and --loop (or --time), "
            f"on a machine doing nothing else")


def bench(args, choice, device, out_dir=None, summary_path=None, inputs=None, timings=None):
    """One run of ``choice`` (``session.choose``) on one device: load, warm up, time, save, print; the summary."""
    started = time.perf_counter()
    if inputs is None:  # a device of --device 0,1 gets its shard of the input lists
        inputs = list_inputs(args.input) if args.input else None
    timings = Timings() if timings is None else timings
    try:
        with choice.open(batchsize=args.batchsize, device=device, threads=args.threads, size=args.size,
                         profile=bool(args.profile)) as opened:
            log.info("%s", io_line("inputs", [(spec.name, spec.shape, spec.dtype) for spec in opened.backend.inputs]))
            if inputs:
                filesinfo = run_files(args, opened, inputs, out_dir, timings)
            else:
                filesinfo = run_pure(args, opened, out_dir, timings)
            profiled = save_profile(args.profile, opened.backend, args.model) if args.profile else []
    except KeyboardInterrupt:
        if summary_path:  # the whole run's (a device of --device 0,1: its parent says it)
            say_left(out_dir)
        raise
    backend = opened.backend
    extra = {**opened.summary_keys("files" if inputs else "pure"),
             "file_read_ms": timings.read_ms, "file_write_ms": timings.write_ms,
             "wall_s": time.perf_counter() - started,
             **({"e2e_latency": stats(timings.e2e)} if timings.e2e else {}),
             **in_flight_keys(timings.requests, backend.batchsize, len(timings.compute), timings.loop_ms)}
    summary = build_summary(filesinfo, vars(args), timings.compute, timings.h2d, timings.d2h, backend.batchsize,
                            os.getpid(), extra=extra)
    if summary_path:
        write_summary(summary_path, summary)
        unfinished_marker(out_dir).unlink(missing_ok=True)
        log.info("outputs in %s, summary %s", out_dir, summary_path)
    for line in performance_lines(summary, args.display_all_summary) + profiled:
        print(line, flush=True)
    warning = spread_warning(timings.compute)
    if warning:
        log.warning("%s", warning)
    return summary
