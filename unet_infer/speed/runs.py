"""The runs: ``python3 -m unet_infer.bench`` in pure-inference mode, one row per config and batch size,
each summary read back through :mod:`unet_infer.summary` only. The rounds are interleaved (the CPUs
may be shared: a slow spell then hits every row alike, not one row's every run); a row's figures
are the medians of its rounds. :func:`measure` chooses the runs of one row in round 1 (under
``--max-seconds``: :class:`LoopPlanner`); :func:`benchmark_rows` makes every row.
"""

import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import backends
from .. import summary as summ
from ..workdir import run_paths

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PERF_LINE = re.compile(r"^\[INFO\] (NPU_compute_time|throughput)")
TAIL_LINES = 12


def plan_loop(loop, warmup, budget_s, per_run_s, overhead_s=0.0):
    """Timed runs that fit ``budget_s``: overhead + (warmup + n) x per run <= budget, 1 <= n <= loop."""
    if budget_s is None or per_run_s <= 0:
        return loop
    n = math.floor((budget_s - overhead_s) / per_run_s) - warmup
    return max(1, min(loop, n))


@dataclass(frozen=True)
class Job:
    """One row to measure: a backend, a precision, a batch size and the model file the runner loads."""

    backend: str
    precision: str
    batchsize: int
    model: Path

    def __str__(self):
        return f"{self.backend} {self.precision} bs {self.batchsize}"


@dataclass
class Run:
    """What one runner process gave: its summary (None when it failed), wall time, exit status, log."""

    summary: dict
    wall_s: float
    status: int
    log: Path
    loop: int


class Runner:
    """Starts ``python3 -m unet_infer.bench`` runs in pure-inference mode and reads their summaries."""

    def __init__(self, workdir, size, warmup, threads=None, device=None, quiet=False):
        self.out = Path(workdir) / "runs"
        self.size, self.warmup, self.threads, self.device, self.quiet = size, warmup, threads, device, quiet
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.count = 0

    def _dirname(self, job, loop):
        while True:
            self.count += 1
            name = f"{job.backend}_{job.precision}_bs{job.batchsize}_loop{loop}_{self.stamp}_{self.count}"
            if not any(path.exists() for path in run_paths(self.out, name)):
                return name

    def command(self, job, loop, dirname):
        """The runner's command line: ais_bench's flags, then the backend's own (``runner_flags``:
        none for a backend another program runs, which takes ais_bench's only)."""
        cmd = [sys.executable, "-m", "unet_infer.bench", f"--model={job.model}", f"--loop={loop}",
               f"--batchsize={job.batchsize}", f"--warmup_count={self.warmup}", f"--output={self.out}",
               f"--output_dirname={dirname}"]
        if self.device is not None:
            cmd.append(f"--device={self.device}")
        return cmd + backends.get_backend(job.backend).runner_flags(job.precision, self.size, self.threads,
                                                                    self.quiet)

    def run(self, job, loop):
        """One runner process with ``loop`` timed runs: a :class:`Run`."""
        self.out.mkdir(parents=True, exist_ok=True)
        dirname = self._dirname(job, loop)
        cmd = self.command(job, loop, dirname)
        log_path = self.out / f"{dirname}.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        log.info("%s, loop %d: %s", job, loop, shlex.join(cmd[1:]))
        start = time.perf_counter()
        tail = []
        with open(log_path, "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    errors="replace")
            for line in proc.stdout:
                fh.write(line)
                tail = (tail + [line])[-TAIL_LINES:]
                if not self.quiet or PERF_LINE.match(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
            status = proc.wait()
        wall = time.perf_counter() - start
        summary_path = run_paths(self.out, dirname)[1]
        if status or not summary_path.is_file():
            if self.quiet:
                sys.stderr.write("".join(tail))
            log.warning("%s failed (exit status %d); its output: %s", job, status, log_path)
            return Run(None, wall, status or 1, log_path, loop)
        return Run(summ.read_summary(summary_path), wall, 0, log_path, loop)


class BareRunner:
    """Starts ``python3 -m unet_infer.speed.bare`` beside an openvino row: a bare OpenVINO
    session on the row's own model; :meth:`run` gives its compute times (ms) or None."""

    backend = "openvino"

    def __init__(self, size, warmup, threads=None):
        self.size, self.warmup, self.threads = size, warmup, threads

    def command(self, job, loop):
        cmd = [sys.executable, "-m", "unet_infer.speed.bare", f"--model={job.model}",
               f"--precision={job.precision}", f"--batchsize={job.batchsize}", f"--size={self.size}",
               f"--loop={loop}", f"--warmup={self.warmup}"]
        return cmd + ([f"--threads={self.threads}"] if self.threads else [])

    def run(self, job, loop):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        proc = subprocess.run(self.command(job, loop), capture_output=True, text=True, env=env, errors="replace")
        try:
            return json.loads(proc.stdout.strip().splitlines()[-1])["times_ms"] if proc.returncode == 0 else None
        except (IndexError, ValueError, KeyError):
            return None
        finally:
            if proc.returncode:
                log.warning("%s: the bare OpenVINO session failed: %s", job, proc.stderr.strip()[-500:])


def load_average():
    """The 1-minute load average now (None where the system has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


class LoopPlanner:
    """The loop count of each row of one config under ``--max-seconds``: the config's first row is
    probed with ``--loop=1``, later rows are planned from the time per image and the fixed cost
    per process measured so far."""

    def __init__(self, loop, warmup, max_seconds):
        self.loop, self.warmup, self.max_seconds = loop, warmup, max_seconds
        self.per_image_s = self.overhead_s = None

    @property
    def needs_probe(self):
        return self.max_seconds is not None and self.loop > 1 and self.per_image_s is None

    def loop_for(self, batchsize):
        """The loop count of a row at ``batchsize``, from what was measured so far."""
        if self.max_seconds is None or self.per_image_s is None:
            return self.loop
        return plan_loop(self.loop, self.warmup, self.max_seconds, self.per_image_s * batchsize, self.overhead_s)

    def after_probe(self, probe, job):
        """The loop count of ``job``'s row after its ``--loop=1`` run ``probe``, in the budget it left."""
        per_run_s = summ.compute_ms(probe.summary) / 1000.0
        overhead_s = max(0.0, probe.wall_s - (self.warmup + 1) * per_run_s)
        planned = plan_loop(self.loop, self.warmup, self.max_seconds - probe.wall_s, per_run_s, overhead_s)
        log.info("%s: %.3f s per batch, %.1f s fixed cost per run: loop %d", job, per_run_s, overhead_s, planned)
        return planned

    def learn(self, run, batchsize):
        """Remember the time per image and the fixed cost per process of a finished run."""
        per_run_s = summ.compute_ms(run.summary) / 1000.0
        self.per_image_s = per_run_s / batchsize
        self.overhead_s = max(0.0, run.wall_s - (self.warmup + run.loop) * per_run_s)


def _median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def make_row(summary, job, loop, date, fallback_machine, rounds=None):
    """One table row from a run's summary, or (``rounds``: ``[(summary, bare times or None, load)]``,
    ``summary`` the first round's) from the medians of every round."""
    rounds = rounds or [(summary, None, None)]
    fpss = [summ.throughput(s) for s, _, _ in rounds]
    p50s = [summ.percentile_ms(s, 50) for s, _, _ in rounds]
    p99s = [summ.percentile_ms(s, 99) for s, _, _ in rounds]
    recorded = summ.precision(summary)
    if recorded and recorded != job.precision:
        log.warning("%s: the runner reports precision %s", job, recorded)
    bare = [1000.0 * job.batchsize / (sum(t) / len(t)) for _, t, _ in rounds if t]
    fps = _median(fpss)
    return {"backend": job.backend, "precision": job.precision, "batchsize": job.batchsize, "fps": fps,
            "fps_min": min(fpss), "fps_max": max(fpss), "rounds": len(rounds),
            "p50": _median(p50s), "p99": _median(p99s),
            "ms_per_image": _median([summ.compute_ms(s) for s, _, _ in rounds]) / job.batchsize, "loop": loop,
            "load": _median([load for _, _, load in rounds]),
            "load_max": max((load for _, _, load in rounds if load is not None), default=None),
            "bare_fps": _median(bare), "vs_bare": fps / _median(bare) if bare else None,
            "ran": recorded, "machine": summ.machine(summary) or fallback_machine, "date": date}


def measure(runner, job, planner):
    """The run a row is made of: under ``--max-seconds``, a config's first row is a ``--loop=1`` probe,
    then (when more than one timed run fits what is left of the budget) the planned run.
    """
    if not planner.needs_probe:
        run = runner.run(job, planner.loop_for(job.batchsize))
    else:
        run = runner.run(job, 1)
        planned = planner.after_probe(run, job) if run.summary else 1
        if planned > 1:
            run = runner.run(job, planned)
    if run.summary:
        planner.learn(run, job.batchsize)
    return run


def benchmark_rows(runner, config_jobs, loop, max_seconds, date, fallback_machine, rounds=1, bare=None):
    """Every row of every config (``config_jobs``: each config's jobs, in order) over ``rounds``
    interleaved rounds: ``(rows, failures)``. Round 1 plans each row's loop (per config, under
    ``max_seconds`` / rounds); ``bare`` (a :class:`BareRunner`) times its backend's rows bare too.
    ``fallback_machine``: the machine of a row whose summary names none (or a function of the backend)."""
    budget = None if max_seconds is None else max_seconds / rounds / (2 if bare else 1)
    planners = [LoopPlanner(loop, runner.warmup, budget) for _ in config_jobs]
    done, loops, failures = {}, {}, []  # job -> [(summary, bare times, load)]; job -> loop of round 1
    for round_no in range(rounds):
        for planner, jobs in zip(planners, config_jobs):
            for job in jobs:
                if round_no and job not in done:
                    continue  # failed in round 1
                load = load_average()
                run = measure(runner, job, planner) if not round_no else runner.run(job, loops[job])
                if not run.summary:
                    failures.append({"backend": job.backend, "precision": job.precision, "batchsize": job.batchsize,
                                     "status": run.status, "log": run.log})
                    continue
                loops.setdefault(job, run.loop)
                times = bare.run(job, run.loop) if bare and job.backend == bare.backend else None
                done.setdefault(job, []).append((run.summary, times, load))
    rows = []
    for jobs in config_jobs:
        for job in jobs:
            if job not in done:
                continue
            fallback = fallback_machine(job.backend) if callable(fallback_machine) else fallback_machine
            row = make_row(done[job][0][0], job, loops[job], date, fallback, rounds=done[job])
            cut = f" (cut from {loop} by --max-seconds {max_seconds:g})" if loops[job] < loop else ""
            spread = f" ({row['fps_min']:.2f}-{row['fps_max']:.2f} over {row['rounds']} rounds)" if rounds > 1 else ""
            vs = f", {row['vs_bare']:.2f}x a bare OpenVINO session" if row["vs_bare"] else ""
            print(f"[benchmark] {job}: {row['fps']:.2f} images/s{spread}, p50 {row['p50']:.2f} ms, p99 "
                  f"{row['p99']:.2f} ms per batch, {row['ms_per_image']:.2f} ms/image, loop {loops[job]}{cut}{vs}",
                  flush=True)
            rows.append(row)
    return rows, failures
