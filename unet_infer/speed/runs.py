"""The runs: ``python3 -m unet_infer.bench`` in pure-inference mode, one row per config and batch size.
The rounds are interleaved (the CPUs may be shared: a slow spell then hits every row alike, not one
row's every run); a row's figures are the medians of its rounds, at the loop count round 1 chose."""

import json
import logging
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .. import backends
from .. import summary as summ
from ..machine import describe_machine
from ..workdir import run_paths

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
PERF_LINE = re.compile(r"^\[INFO\] (NPU_compute_time|throughput)")
TAIL_LINES = 12
BARE_BACKEND = "openvino"  # its rows are timed beside a bare session of its own library (speed.bare)


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
    """What one runner process gave: its summary (None when it failed), wall time, exit status, loop."""

    summary: dict
    wall_s: float
    status: int
    loop: int


def repo_env():
    """This environment with the repository on PYTHONPATH: the processes started import this package."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


class Runner:
    """Runs ``python3 -m unet_infer.bench`` (pure inference) and ``python3 -m unet_infer.speed.bare``."""

    def __init__(self, workdir, size, warmup, threads=None, device=None, quiet=False):
        self.out = Path(workdir) / "runs"
        self.size, self.warmup, self.threads, self.device, self.quiet = size, warmup, threads, device, quiet
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.count = 0

    def command(self, job, loop, dirname):
        """The runner's command line: ais_bench's flags, then the runner's own."""
        cmd = [sys.executable, "-m", "unet_infer.bench", f"--model={job.model}", f"--loop={loop}",
               f"--batchsize={job.batchsize}", f"--warmup_count={self.warmup}", f"--output={self.out}",
               f"--output_dirname={dirname}"]
        if self.device is not None:
            cmd.append(f"--device={self.device}")
        cmd += [f"--backend={job.backend}", f"--precision={job.precision}", f"--size={self.size}"]
        if self.threads:
            cmd.append(f"--threads={self.threads}")
        return cmd + (["--quiet"] if self.quiet else [])

    def run(self, job, loop):
        """One runner process with ``loop`` timed runs: a :class:`Run`."""
        self.out.mkdir(parents=True, exist_ok=True)
        while True:  # a name no earlier run took
            self.count += 1
            dirname = f"{job.backend}_{job.precision}_bs{job.batchsize}_loop{loop}_{self.stamp}_{self.count}"
            if not any(path.exists() for path in run_paths(self.out, dirname)):
                break
        cmd = self.command(job, loop, dirname)
        log_path = self.out / f"{dirname}.log"
        log.info("%s, loop %d: %s", job, loop, shlex.join(cmd[1:]))
        start = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=repo_env(),
                                    errors="replace")
            for line in proc.stdout:
                fh.write(line)
                if not self.quiet or PERF_LINE.match(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
            status = proc.wait()
        wall = time.perf_counter() - start
        summary_path = run_paths(self.out, dirname)[1]
        if status or not summary_path.is_file():
            if self.quiet:  # its last lines, which were not shown
                sys.stderr.write("".join(log_path.read_text(encoding="utf-8").splitlines(True)[-TAIL_LINES:]))
            log.warning("%s failed (exit status %d); its output: %s", job, status, log_path)
            return Run(None, wall, status or 1, loop)
        return Run(summ.read_summary(summary_path), wall, 0, loop)

    def bare_command(self, job, loop):
        cmd = [sys.executable, "-m", "unet_infer.speed.bare", f"--model={job.model}",
               f"--precision={job.precision}", f"--batchsize={job.batchsize}", f"--size={self.size}",
               f"--loop={loop}", f"--warmup={self.warmup}"]
        return cmd + ([f"--threads={self.threads}"] if self.threads else [])

    def bare(self, job, loop):
        """The compute times (ms) of a bare OpenVINO session on ``job``'s model, or None when it failed."""
        proc = subprocess.run(self.bare_command(job, loop), capture_output=True, text=True, env=repo_env(),
                              errors="replace")
        if proc.returncode:
            log.warning("%s: the bare OpenVINO session failed: %s", job, proc.stderr.strip()[-500:])
            return None
        return json.loads(proc.stdout.splitlines()[-1])["times_ms"]


def _costs(run, warmup):
    """``(compute s per batch, fixed cost s per process)`` of a finished run."""
    per_run_s = summ.compute_ms(run.summary) / 1000.0
    return per_run_s, max(0.0, run.wall_s - (warmup + run.loop) * per_run_s)


def measure(runner, job, loop, budget, learned):
    """Round 1's run of ``job``. Under a ``budget`` (s), a config's first row is a ``--loop=1`` probe, then
    the planned run if more than one fits; its later rows are planned from ``learned`` (updated here):
    ``[s per image, fixed cost s]`` of the config's last run."""
    if budget is not None and loop > 1 and not learned:
        run = runner.run(job, 1)
        if run.summary:
            per_run_s, overhead_s = _costs(run, runner.warmup)
            planned = plan_loop(loop, runner.warmup, budget - run.wall_s, per_run_s, overhead_s)
            log.info("%s: %.3f s per batch, %.1f s fixed cost per run: loop %d", job, per_run_s, overhead_s, planned)
            if planned > 1:
                run = runner.run(job, planned)
    else:
        run = runner.run(job, plan_loop(loop, runner.warmup, budget, learned[0] * job.batchsize, learned[1])
                         if learned else loop)
    if run.summary:
        per_run_s, overhead_s = _costs(run, runner.warmup)
        learned[:] = [per_run_s / job.batchsize, overhead_s]
    return run


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fallback_machine(backend):
    """The machine where a summary names none (ais_bench's own), with the backend's own device if any."""
    device = backends.get_backend(backend).accelerator
    return describe_machine() + (f", {device}" if device else "")


def make_row(job, rounds, loop, date):
    """One table row from the medians of its ``rounds`` (``[(summary, bare times or None, load)]``)."""
    summaries = [s for s, _, _ in rounds]
    fpss = [summ.throughput(s) for s in summaries]
    recorded = summ.precision(summaries[0])
    if recorded and recorded != job.precision:
        log.warning("%s: the runner reports precision %s", job, recorded)
    bare = [1000.0 * job.batchsize / (sum(t) / len(t)) for _, t, _ in rounds if t]
    loads = [load for _, _, load in rounds]
    fps = _median(fpss)
    return {"backend": job.backend, "precision": job.precision, "batchsize": job.batchsize, "fps": fps,
            "fps_min": min(fpss), "fps_max": max(fpss), "rounds": len(rounds),
            "p50": _median([summ.percentile_ms(s, 50) for s in summaries]),
            "p99": _median([summ.percentile_ms(s, 99) for s in summaries]),
            "ms_per_image": _median([summ.compute_ms(s) for s in summaries]) / job.batchsize, "loop": loop,
            "load": _median(loads), "load_max": max(loads),
            "bare_fps": _median(bare), "vs_bare": fps / _median(bare) if bare else None,
            "ran": recorded, "machine": summ.machine(summaries[0]) or fallback_machine(job.backend), "date": date}


def benchmark_rows(runner, config_jobs, loop, max_seconds, date, rounds=1, bare=False):
    """``(rows, failures)`` of every config's jobs over ``rounds`` interleaved rounds; round 1 plans each
    row's loop (under ``max_seconds`` / rounds, halved with ``bare``: the openvino rows timed bare too)."""
    budget = None if max_seconds is None else max_seconds / rounds / (2 if bare else 1)
    learned = [[] for _ in config_jobs]
    done, loops, failures = {}, {}, []  # job -> [(summary, bare times, load)]; job -> loop of round 1
    for round_no in range(rounds):
        for costs, jobs in zip(learned, config_jobs):
            for job in jobs:
                if round_no and job not in done:
                    continue  # failed in round 1
                load = os.getloadavg()[0]
                run = runner.run(job, loops[job]) if round_no else measure(runner, job, loop, budget, costs)
                if not run.summary:
                    failures.append({"backend": job.backend, "precision": job.precision, "batchsize": job.batchsize,
                                     "status": run.status})
                    continue
                loops.setdefault(job, run.loop)
                times = runner.bare(job, run.loop) if bare and job.backend == BARE_BACKEND else None
                done.setdefault(job, []).append((run.summary, times, load))
    rows = []
    for job in [job for jobs in config_jobs for job in jobs if job in done]:
        row = make_row(job, done[job], loops[job], date)
        cut = f" (cut from {loop} by --max-seconds {max_seconds:g})" if loops[job] < loop else ""
        spread = f" ({row['fps_min']:.2f}-{row['fps_max']:.2f} over {row['rounds']} rounds)" if rounds > 1 else ""
        vs = f", {row['vs_bare']:.2f}x a bare OpenVINO session" if row["vs_bare"] else ""
        print(f"[benchmark] {job}: {row['fps']:.2f} images/s{spread}, p50 {row['p50']:.2f} ms, p99 "
              f"{row['p99']:.2f} ms per batch, {row['ms_per_image']:.2f} ms/image, loop {loops[job]}{cut}{vs}",
              flush=True)
        rows.append(row)
    return rows, failures
