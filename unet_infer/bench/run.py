"""One run of the runner on one device: load the model, warm up, time every batch (or the pure-
inference loop), save the outputs and the summary, print the Performance Summary (``bench``); and
the checks of the output folder a run writes to.

The compute time covers only the model run; file reading and writing and the host-device copies
(H2D, D2H) are timed apart. ``--device 0,1`` (``devices.run_devices``) runs ``bench`` once per
device on its shard of the inputs; the CLI (``runner.main``) runs it once.
"""

import logging
import os
import time
from pathlib import Path

import numpy as np

from .. import cli
from ..cli import UserError
from ..progress import progress
from ..loop import Timings, run_loop
from ..summary import build_summary, in_flight_keys, performance_lines, write_summary
from .batching import first_clash, plan_batches
from .files import OutputWriter, file_feeds, list_inputs, plan_files_per_batch, pure_data
from .profile import save_profile

log = logging.getLogger(__name__)


def refuse_output_in_input(out_dir, inputs):
    """Outputs written into an input folder would be read as inputs by the next run: refused
    (an input named as a file is read alone, whatever lies beside it)."""
    for folder in inputs:
        if not Path(folder).is_dir():
            continue
        folder = Path(folder).resolve()
        target = Path(out_dir).resolve()
        if target == folder or folder in target.parents:
            raise UserError(f"{out_dir}: inside the input folder {folder}; write the outputs elsewhere")


def refuse_existing_run(out_dir, summary_path):
    """Never mix two runs: an output folder with files in it, or an existing summary, is a UserError."""
    if summary_path.exists() or (out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))):
        raise UserError(f"{out_dir} already holds a run; choose another --output_dirname, or leave it out "
                        f"for a new timestamped folder (as ais_bench does)")


def make_dirs(out_dir):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cli.os_error(out_dir, exc, "create the output folder") from None


def run_files(args, opened, inputs, out_dir, timings):
    """Every batch of the input folders, ``--loop`` runs each; the filesinfo of what was saved."""
    backend = opened.backend
    per_batch = plan_files_per_batch(inputs, backend.inputs)
    batches = plan_batches(len(inputs[0]), per_batch)
    log.info("%d files, %d per batch, %d batches", len(inputs[0]), per_batch, len(batches))
    clash = first_clash(inputs[0], args.outfmt) if out_dir else None
    if clash:
        raise UserError(f"{clash[0]} and {clash[1]} would write the same output files")
    feeds = file_feeds(batches, inputs, backend.inputs, per_batch, timings)
    first = next(feeds)
    opened.warm_up(first[0], args.warmup_count)
    if out_dir:
        make_dirs(out_dir)
    writer = OutputWriter(inputs, per_batch, out_dir, args.outfmt, timings)
    with progress(total=len(batches), desc="Inference", unit="batch") as bar:
        run_loop(backend, _chain(first, feeds), lambda batch, outputs: (writer(batch, outputs), bar.update(1)),
                 timings, loop=args.loop)
    log.info("file reading %.1f ms, output writing %.1f ms (not in the compute time)",
             timings.read_ms, timings.write_ms)
    return writer.filesinfo


def _chain(first, rest):
    yield first
    yield from rest


def run_pure(args, opened, out_dir, timings):
    """``--loop`` runs on generated data of the model's input shape; nothing but the summary is saved."""
    backend = opened.backend
    arrays = [pure_data(spec, args.pure_data_type, np.random.default_rng()) for spec in backend.inputs]
    opened.warm_up(arrays, args.warmup_count)
    if out_dir:
        make_dirs(out_dir)
    with progress(total=args.loop, desc="Inference", unit="run") as bar:
        run_loop(backend, [(arrays, None)], lambda tag, outputs: None, timings, loop=args.loop,
                 on_run=lambda: bar.update(1))
    return {}


def bench(args, choice, device, out_dir=None, summary_path=None, inputs=None, timings=None):
    """One run on one device of the model ``choice`` (``session.choose``): load, warm up, time, save;
    prints the Performance Summary; returns the summary."""
    started = time.perf_counter()
    if inputs is None:  # a device of --device 0,1 gets its shard of the input lists
        inputs = list_inputs(args.input) if args.input else None
    timings = Timings() if timings is None else timings
    with choice.open(batchsize=args.batchsize, device=device, threads=args.threads, size=args.size,
                     profile=bool(args.profile)) as opened:
        if inputs:
            filesinfo = run_files(args, opened, inputs, out_dir, timings)
        else:
            filesinfo = run_pure(args, opened, out_dir, timings)
        profiled = save_profile(args.profile, opened.backend, args.model) if args.profile else []
    backend = opened.backend
    extra = {**opened.summary_keys("files" if inputs else "pure"),
             "file_read_ms": timings.read_ms, "file_write_ms": timings.write_ms,
             "wall_s": time.perf_counter() - started,
             **in_flight_keys(timings.requests, backend.batchsize, len(timings.compute), timings.loop_ms)}
    summary = build_summary(filesinfo, vars(args), timings.compute, timings.h2d, timings.d2h, backend.batchsize,
                            os.getpid(), extra=extra)
    if summary_path:
        write_summary(summary_path, summary)
        log.info("outputs in %s, summary %s", out_dir, summary_path)
    for line in performance_lines(summary, args.display_all_summary) + profiled:
        print(line, flush=True)
    return summary
