"""Throughput tables: the runner in pure-inference mode over backend x precision x batch size.

    scripts/benchmark.sh                                   # the defaults for this machine (CPU or GPU)
    python3 -m unet_infer.benchmark --weights random --width 64 --size 572 --batchsizes 1,2,4 \\
        --configs onnxruntime:fp32,onnxruntime:int8,torch:fp32,torch:bf16 --loop 100 --max-seconds 60

Every row is one run of the guide's performance command, with our runner in place of ais_bench:

    python3 -m unet_infer.bench --model=UNet_bs8.onnx --loop=100 --batchsize=8 --warmup_count=1 \\
        --output=WORKDIR/runs --output_dirname=<config>_bs8_<stamp>

and reads its summary json: images/s = ``throughput`` (1000 x batch size / mean compute time of
one batch, ms: host time excluded, as ais_bench counts it), p50 and p99 = ``NPU_compute_time``
median and ``percentile(99%)`` (ms per batch), the machine = the summary's ``machine``.

The models are made once under WORKDIR/models/<model>/ and reused while they are newer than
their source: the weights (``--weights random``: ``UNet(width=W)`` with seed 0, which runs as fast
as trained weights), UNet_dynamic_bs.onnx (export), UNet_dynamic_sim.onnx (scripts/onnxsim.sh),
UNet_int8.onnx (INT8, calibrated on 4 generated Carvana-format images, WORKDIR/calib_s<S>), and
per batch size UNet_bs<B>.onnx / UNet_int8_bs<B>.onnx (python3 -m unet_infer.compile) or
UNet_bs<B>.om (scripts/atc.sh, backend acl). torch runs take the .pth itself.

``--max-seconds S`` caps the time of one row: a first run with ``--loop=1`` (per config) times one
batch, and the loop count is cut (down to 1) so that the row takes about S seconds at most; later
batch sizes of the config are planned from the time per image measured so far. The loop count
actually used is printed and is a column of the table.

The table goes into --markdown (BENCHMARKS.md) as one section per machine, model and date, keyed
by its ``## `` heading line: a second run on the same machine, model and date replaces that
section, every other section is kept. The plot (images/s against batch size, one line per
backend and precision) goes to --plot, by default benchmarks/<section>.png beside the markdown.
"""

import argparse
import importlib.metadata
import importlib.util
import logging
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .errors import HelpFormatter, UserError, int_at_least, run_cli
from .formats import DEFAULT_SIZE, atomic_write_text
from .machine import describe_machine, today
from .progress import set_quiet

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = {"onnxruntime": ("fp32", "int8"), "torch": ("fp32", "fp16", "bf16"), "acl": ("fp16",)}
PACKAGES = {"onnxruntime": "onnxruntime", "torch": "torch", "acl": "ais_bench"}
DEFAULT_CONFIGS = "onnxruntime:fp32,onnxruntime:int8,torch:fp32,torch:bf16"
DEFAULT_BATCHSIZES = "1,4,8,16,32,64"
RANDOM_SEED = 0
CALIB_IMAGES = 4
CALIB_SEED = 0
COMMAND_ENV = "UNET_BENCH_COMMAND"  # set by scripts/benchmark.sh: the command line as the user typed it
PERF_LINE = re.compile(r"^\[INFO\] (NPU_compute_time|throughput)")

TITLE = "# UNet inference benchmarks"
HEADER = f"""{TITLE}

Made by `scripts/benchmark.sh` (`python3 -m unet_infer.benchmark`): our ais_bench-compatible runner
in pure-inference mode, as `python3 -m ais_bench --model=UNet_bs8.om --loop=100 --batchsize=8`,
over backend x precision x batch size.

- **images/s** = 1000 x batch size / mean compute time of one batch (ms), as ais_bench reports
  its throughput: the model's compute only; host time (making the data, copies to and from the
  device) is not counted. **p50** and **p99**: median and 99th percentile of the compute time of
  one batch over the timed runs (`loop`, after 1 untimed warm-up run). **ms/image** = mean
  compute time of one batch / batch size.
- `loop` below the requested count: cut by `--max-seconds` so that one row takes about that long.
- The model for speed is the full ModelZoo UNet (width 64, 31.0 M parameters, 477.6 GFLOP per
  572x572 image); random weights run at the same speed as trained ones.
- Each section is one machine, model and date; running the benchmark again on the same machine,
  model and date replaces its section and keeps the others.

For comparison, the seed guide's figures (ais_bench, Ascend .om models compiled by atc, whose
default precision for inference is fp16; UNet at 572x572, images/s):

| Chip | bs 1 | bs 4 | bs 8 | bs 16 | bs 32 | bs 64 |
|---|---|---|---|---|---|---|
| Ascend 310P3 | 75.06 | 71.29 | 68.53 | 67.71 | 65.50 | 49.02 |
| Ascend 310B1 | 12.78 | 11.75 | 11.56 | 11.29 | 11.18 | NA |

An older version of the guide, bs 1: Ascend 310 44.40, 310P 78.64, NVIDIA T4 38.45 images/s.
"""
COLUMNS = ("Backend", "Precision", "Batch size", "images/s", "p50 ms/batch", "p99 ms/batch", "ms/image",
           "loop", "Machine", "Date")


# ---- options -----------------------------------------------------------------------------

def parse_configs(text):
    """``"onnxruntime:fp32,torch:bf16"`` -> ``[("onnxruntime", "fp32"), ("torch", "bf16")]`` (duplicates dropped)."""
    allowed = "; ".join(f"{b}: {', '.join(p)}" for b, p in PRECISIONS.items())
    configs = []
    for part in [p.strip() for p in str(text).split(",")]:
        backend, sep, precision = part.partition(":")
        if not sep or not backend or not precision:
            raise UserError(f"--configs: {part!r} is not backend:precision (e.g. onnxruntime:fp32)")
        if backend not in PRECISIONS:
            raise UserError(f"--configs: unknown backend {backend!r} in {part!r} ({allowed})")
        if precision not in PRECISIONS[backend]:
            raise UserError(f"--configs: precision {precision} is not available on {backend} in {part!r} ({allowed})")
        if (backend, precision) not in configs:
            configs.append((backend, precision))
    return configs


def parse_batchsizes(text):
    """``"1,4,8"`` -> ``[1, 4, 8]`` (duplicates dropped); anything else is a UserError."""
    try:
        values = [int(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UserError(f"--batchsizes: expected a batch size or a comma list of them (e.g. 1,4,8), got {text!r}")
    return list(dict.fromkeys(values))


def check_available(configs):
    """Every backend asked for can run here; the acl one needs Huawei's ais_bench (and atc)."""
    for backend in dict.fromkeys(b for b, _ in configs):
        if importlib.util.find_spec(PACKAGES[backend]) is None:
            if backend == "acl":
                from .backends.acl_backend import INSTALL
                raise UserError(f"--configs: the acl backend runs .om models on Huawei's ais_bench, "
                                f"which is not installed here; {INSTALL}")
            raise UserError(f"--configs: the {backend} backend needs the {PACKAGES[backend]} package: "
                            f"pip install {PACKAGES[backend]}")


# ---- the models --------------------------------------------------------------------------

def fresh(path, *sources):
    """True when ``path`` exists and is not older than any of ``sources``."""
    path = Path(path)
    if not path.is_file():
        return False
    mtime = path.stat().st_mtime
    return all(mtime >= Path(s).stat().st_mtime for s in sources)


def _slug(text, limit=80):
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower()[:limit].strip("-")


def model_tag(weights, width, size):
    """The folder name of one model's files: ``random_w64_s572`` or ``<stem>_<path hash>_s572``."""
    if weights == "random":
        return f"random_w{width}_s{size}"
    import hashlib
    digest = hashlib.sha1(str(Path(weights).resolve()).encode()).hexdigest()[:8]
    return f"{_slug(Path(weights).stem, 40) or 'weights'}_{digest}_s{size}"


def make_random_weights(path, width, seed=RANDOM_SEED):
    """Save the state_dict of ``UNet(width=width)`` initialised with ``seed`` (the ModelZoo layout)."""
    import torch

    from .formats import atomic_path
    from .model import UNet

    torch.manual_seed(seed)
    model = UNet(width=width).eval()
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    log.info("wrote %s: random UNet of width %d (seed %d)", path, width, seed)
    return Path(path)


def describe_model(pth, weights, size):
    """``(heading words, sentence)`` of the model: width, weights, parameters, GFLOP per image."""
    from .model import count_macs, count_parameters, load_unet

    model, layout = load_unet(pth)
    params = count_parameters(model) / 1e6
    gflop = 2 * count_macs(model, size) / 1e9
    source = f"random weights (seed {RANDOM_SEED})" if weights == "random" else Path(weights).name
    short = f"UNet w{layout.width} {layout.name}, {source}, {size}x{size}"
    gflop_text = f"{gflop:.1f}" if gflop >= 1 else f"{gflop:.3g}"
    long = (f"UNet of width {layout.width} ({layout.name} layout, {layout.n_classes} class"
            f"{'es' if layout.n_classes != 1 else ''}), {source}: {params:.1f} M parameters, "
            f"{gflop_text} GFLOP per {size}x{size} image")
    return short, long


def calibration_images(workdir, size):
    """WORKDIR/calib_s<S>: 4 generated Carvana-format images, preprocessed at ``size`` (made once)."""
    from .formats import list_files
    from .preprocess import preprocess_folder
    from .sample import generate

    calib = Path(workdir) / f"calib_s{size}"
    if calib.is_dir() and len(list_files(calib, (".bin",))) >= CALIB_IMAGES:
        return calib
    sample = Path(workdir) / "calib_sample"
    if not (sample / "train").is_dir() or len(list((sample / "train").glob("*.jpg"))) < CALIB_IMAGES:
        log.info("generating %d calibration images in %s", CALIB_IMAGES, sample)
        generate(sample, cars=1, seed=CALIB_SEED, views=CALIB_IMAGES)
    preprocess_folder(sample / "train", calib, size)
    return calib


def _run_checked(cmd, what):
    log.info("%s: %s", what, shlex.join(str(c) for c in cmd))
    status = subprocess.call([str(c) for c in cmd])
    if status:
        raise UserError(f"{what} failed (exit status {status}, see above)")


def prepare_models(workdir, weights, width, size, configs, batchsizes, threads=None):
    """Make (or reuse) every model the configs need; returns ``(models, pth)``.

    ``models``: ``{(backend, precision, batchsize): model path}``; ``pth``: the weights file.
    """
    workdir = Path(workdir)
    folder = workdir / "models" / model_tag(weights, width, size)
    folder.mkdir(parents=True, exist_ok=True)
    if weights == "random":
        pth = folder / f"UNet_w{width}_seed{RANDOM_SEED}.pth"
        if not pth.is_file():
            make_random_weights(pth, width)
    else:
        pth = Path(weights)
        if not pth.is_file():
            raise UserError(f"{pth}: checkpoint not found (--weights takes a .pth file or 'random')")
    backends = {b for b, _ in configs}
    precisions = {(b, p) for b, p in configs}
    models = {}
    sim = folder / "UNet_dynamic_sim.onnx"
    if backends & {"onnxruntime", "acl"}:
        dynamic = folder / "UNet_dynamic_bs.onnx"
        if fresh(dynamic, pth):
            log.info("reusing %s", dynamic)
        else:
            from .export import pth_to_onnx
            log.info("exporting %s -> %s", pth, dynamic)
            pth_to_onnx(pth, dynamic, size)
        if fresh(sim, dynamic):
            log.info("reusing %s", sim)
        else:
            _run_checked(["bash", ROOT / "scripts" / "onnxsim.sh", dynamic, sim, size], "onnxsim")
    int8 = folder / "UNet_int8.onnx"
    if ("onnxruntime", "int8") in precisions:
        if fresh(int8, sim):
            log.info("reusing %s", int8)
        else:
            from .quantize import quantize_model
            calib = calibration_images(workdir, size)
            quantize_model(sim, calib, int8, n_calib=CALIB_IMAGES, size=size, threads=threads)
    from .compile import compile_onnx
    for backend, precision in configs:
        for bs in batchsizes:
            if backend == "torch":
                models[backend, precision, bs] = pth
                continue
            if backend == "acl":
                model = folder / f"UNet_bs{bs}.om"
                if not fresh(model, sim):
                    _run_checked(["bash", ROOT / "scripts" / "atc.sh", f"--model={sim}", f"--bs={bs}",
                                  f"--output={folder / f'UNet_bs{bs}'}", f"--size={size}"], f"atc bs {bs}")
            else:
                source = int8 if precision == "int8" else sim
                model = folder / (f"UNet_int8_bs{bs}.onnx" if precision == "int8" else f"UNet_bs{bs}.onnx")
                if fresh(model, source):
                    log.info("reusing %s", model)
                else:
                    log.info("compiling %s for batch size %d -> %s", source.name, bs, model)
                    compile_onnx(source, model, bs, threads, check=False)
            models[backend, precision, bs] = model
    return models, pth


# ---- the runs ----------------------------------------------------------------------------

def plan_loop(loop, warmup, budget_s, per_run_s, overhead_s=0.0):
    """Timed runs that fit ``budget_s``: overhead + (warmup + n) x per run <= budget, 1 <= n <= loop."""
    if budget_s is None or per_run_s <= 0:
        return loop
    n = math.floor((budget_s - overhead_s) / per_run_s) - warmup
    return max(1, min(loop, n))


class Runner:
    """Starts ``python3 -m unet_infer.bench`` runs in pure-inference mode and reads their summaries."""

    def __init__(self, workdir, size, warmup, threads=None, device=None, quiet=False):
        self.out = Path(workdir) / "runs"
        self.size, self.warmup, self.threads, self.device, self.quiet = size, warmup, threads, device, quiet
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.count = 0

    def _dirname(self, backend, precision, bs, loop):
        while True:
            self.count += 1
            name = f"{backend}_{precision}_bs{bs}_loop{loop}_{self.stamp}_{self.count}"
            if not (self.out / name).exists() and not (self.out / f"{name}_summary.json").exists():
                return name

    def command(self, model, backend, precision, bs, loop, dirname):
        cmd = [sys.executable, "-m", "unet_infer.bench", f"--model={model}", f"--loop={loop}", f"--batchsize={bs}",
               f"--warmup_count={self.warmup}", f"--output={self.out}", f"--output_dirname={dirname}",
               f"--backend={backend}"]
        if backend == "torch":
            cmd += [f"--precision={precision}", f"--size={self.size}"]
        if backend in ("torch", "acl") and self.device is not None:
            cmd.append(f"--device={self.device}")
        if backend != "acl" and self.threads:
            cmd.append(f"--threads={self.threads}")
        if self.quiet and backend != "acl":
            cmd.append("--quiet")
        return cmd

    def run(self, model, backend, precision, bs, loop):
        """One run: ``(summary dict or None, wall seconds, exit status, log path)``."""
        from .summary import read_summary

        self.out.mkdir(parents=True, exist_ok=True)
        dirname = self._dirname(backend, precision, bs, loop)
        cmd = self.command(model, backend, precision, bs, loop, dirname)
        log_path = self.out / f"{dirname}.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        log.info("%s %s bs %d, loop %d: %s", backend, precision, bs, loop, shlex.join(cmd[1:]))
        start = time.perf_counter()
        with open(log_path, "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    errors="replace")
            tail = []
            for line in proc.stdout:
                fh.write(line)
                tail = (tail + [line])[-12:]
                if not self.quiet or PERF_LINE.match(line):
                    sys.stdout.write(line)
                    sys.stdout.flush()
            status = proc.wait()
        wall = time.perf_counter() - start
        summary_path = self.out / f"{dirname}_summary.json"
        if status or not summary_path.is_file():
            if self.quiet:
                sys.stderr.write("".join(tail))
            log.warning("%s %s bs %d failed (exit status %d); its output: %s", backend, precision, bs, status,
                        log_path)
            return None, wall, status or 1, log_path
        return read_summary(summary_path), wall, 0, log_path


def make_row(summary, backend, precision, bs, loop, date, fallback_machine):
    """One table row from a run's summary."""
    compute = summary.get("NPU_compute_time")
    fps = summary.get("throughput")
    if not isinstance(compute, dict) or not isinstance(fps, (int, float)) or not fps > 0:
        raise UserError(f"{backend} {precision} bs {bs}: the summary has no usable throughput or NPU_compute_time")
    recorded = summary.get("precision")
    if isinstance(recorded, str) and recorded != precision:
        log.warning("%s %s bs %d: the runner reports precision %s", backend, precision, bs, recorded)
    machine = summary.get("machine")
    return {"backend": backend, "precision": precision, "batchsize": bs, "fps": float(fps),
            "p50": float(compute["median"]), "p99": float(compute["percentile(99%)"]),
            "ms_per_image": float(compute["mean"]) / bs, "loop": loop,
            "machine": machine if isinstance(machine, str) and machine else fallback_machine, "date": date}


def run_config(runner, models, backend, precision, batchsizes, loop, max_seconds, date, fallback_machine):
    """The rows of one config, one per batch size; ``(rows, failures)``."""
    rows, failures = [], []
    per_image_s = overhead_s = None  # measured so far in this config: compute time per image, fixed cost per run
    for bs in batchsizes:
        model = models[backend, precision, bs]
        if max_seconds is None or loop == 1:
            used, summary, wall, status, log_path = (loop, *runner.run(model, backend, precision, bs, loop))
        elif per_image_s is None:
            summary, wall, status, log_path = runner.run(model, backend, precision, bs, 1)
            used = 1
            if summary:
                per_run = summary["NPU_compute_time"]["mean"] / 1000.0
                overhead = max(0.0, wall - (runner.warmup + 1) * per_run)
                planned = plan_loop(loop, runner.warmup, max_seconds - wall, per_run, overhead)
                log.info("%s %s bs %d: %.3f s per batch, %.1f s fixed cost per run: loop %d", backend, precision,
                         bs, per_run, overhead, planned)
                if planned > 1:
                    used = planned
                    summary, wall, status, log_path = runner.run(model, backend, precision, bs, planned)
        else:
            used = plan_loop(loop, runner.warmup, max_seconds, per_image_s * bs, overhead_s)
            summary, wall, status, log_path = runner.run(model, backend, precision, bs, used)
        if not summary:
            failures.append({"backend": backend, "precision": precision, "batchsize": bs, "status": status,
                             "log": log_path})
            continue
        row = make_row(summary, backend, precision, bs, used, date, fallback_machine)
        per_image_s = row["ms_per_image"] / 1000.0
        overhead_s = max(0.0, wall - (runner.warmup + used) * row["ms_per_image"] * bs / 1000.0)
        cut = f" (cut from {loop} by --max-seconds {max_seconds:g})" if used < loop else ""
        print(f"[benchmark] {backend} {precision} bs {bs}: {row['fps']:.2f} images/s, p50 {row['p50']:.2f} ms, "
              f"p99 {row['p99']:.2f} ms per batch, {row['ms_per_image']:.2f} ms/image, loop {used}{cut}",
              flush=True)
        rows.append(row)
    return rows, failures


# ---- BENCHMARKS.md -----------------------------------------------------------------------

def section_heading(machine, model, date):
    """The key of a section: its ``## `` line."""
    return f"## {machine} · {model} · {date}"


def _cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_lines(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in rows:
        cells = [r["backend"], r["precision"], r["batchsize"], f"{r['fps']:.2f}", f"{r['p50']:.2f}",
                 f"{r['p99']:.2f}", f"{r['ms_per_image']:.2f}", r["loop"], r["machine"], r["date"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def render_section(heading, rows, model_long, commands, software, plot_link=None, failures=()):
    """The markdown of one section (heading, model, command, table, plot)."""
    lines = [heading, "", f"Model: {model_long}.", "", f"Software: {software}.", "", "Command:", "", "```bash"]
    lines += list(commands) + ["```", ""] + table_lines(rows)
    if failures:
        lines += ["", "Failed runs (no row): " + "; ".join(
            f"{f['backend']} {f['precision']} bs {f['batchsize']} (exit status {f['status']})" for f in failures) + "."]
    if plot_link:
        lines += ["", f"![images/s against batch size]({plot_link})"]
    return "\n".join(lines) + "\n"


def split_sections(text):
    """``(header, [section, ...])``: a section starts at a ``## `` line outside a fenced code block."""
    header, sections, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if line.startswith("## ") and not fenced:
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            header.append(line)
    return "\n".join(header), ["\n".join(s).rstrip() + "\n" for s in sections]


def merge_section(text, section):
    """``text`` (a BENCHMARKS.md, or "") with ``section`` in place of the one with the same heading
    (or appended), under our header; every other section is kept as it was."""
    heading = section.splitlines()[0].rstrip()
    _, sections = split_sections(text or "")
    kept, replaced = [], False
    for old in sections:
        if old.splitlines()[0].rstrip() == heading:
            if not replaced:
                kept.append(section)
            replaced = True
        else:
            kept.append(old)
    if not replaced:
        kept.append(section)
    return HEADER.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in kept)


def write_markdown(path, section):
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a markdown file")
    try:
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, merge_section(old, section))
    return path


# ---- main --------------------------------------------------------------------------------

def software_line(configs, threads):
    from .bench.runner import default_threads

    parts = [f"Python {sys.version.split()[0]}"]
    for package in dict.fromkeys(PACKAGES[b] for b, _ in configs):
        try:
            parts.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(package)
    parts.append(f"{threads or default_threads()} CPU threads")
    return ", ".join(parts)


def _show(path):
    """A path as the command shows it: relative to the current folder when it is inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def python_command(args):
    """The python3 -m unet_infer.benchmark command with every option spelled out."""
    parts = ["python3", "-m", "unet_infer.benchmark", "--weights",
             args.weights if args.weights == "random" else _show(args.weights), "--width", str(args.width),
             "--size", str(args.size), "--batchsizes", args.batchsizes, "--configs", args.configs,
             "--loop", str(args.loop), "--warmup", str(args.warmup)]
    if args.max_seconds is not None:
        parts += ["--max-seconds", f"{args.max_seconds:g}"]
    parts += ["--workdir", _show(args.workdir), "--markdown", _show(args.markdown)]
    if args.plot:
        parts += ["--plot", _show(args.plot)]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    if args.device is not None:
        parts += ["--device", str(args.device)]
    return shlex.join(parts)


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def build_parser():
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.benchmark", description=__doc__,
                                     formatter_class=HelpFormatter, allow_abbrev=False)
    add = parser.add_argument
    add("--weights", default="random", help="UNet checkpoint (.pth state_dict), or 'random': UNet(width=--width), "
                                            f"seed {RANDOM_SEED}")
    add("--width", type=int_at_least(1), default=64, help="width of the random UNet (64: the ModelZoo model)")
    add("--size", type=int_at_least(1), default=DEFAULT_SIZE, help="input height = width")
    add("--batchsizes", default=DEFAULT_BATCHSIZES, help="batch sizes, comma list")
    add("--configs", default=DEFAULT_CONFIGS,
        help="backend:precision, comma list; onnxruntime: fp32, int8; torch: fp32, fp16, bf16; acl: fp16 "
             "(needs ais_bench and atc)")
    add("--loop", type=int_at_least(1), default=100, help="timed runs per row (ais_bench --loop)")
    add("--warmup", type=int_at_least(0), default=1, help="untimed runs first (ais_bench --warmup_count)")
    add("--max-seconds", "--max_seconds", dest="max_seconds", type=_positive_seconds, default=None,
        help="about the most seconds one row may take: the loop count is cut (down to 1) to fit")
    add("--workdir", default="work/bench", help="folder for the models and the runs")
    add("--markdown", default="BENCHMARKS.md", help="the markdown file whose section for this machine, "
                                                   "model and date is written")
    add("--plot", default=None, help="the PNG plot of images/s against batch size (default: "
                                     "benchmarks/<section>.png beside --markdown)")
    add("--threads", type=int_at_least(1), default=None, help="CPU threads per run (default: the runner's, all cores)")
    add("--device", type=int_at_least(0), default=None, help="device id for torch (CUDA) and acl runs (default: 0)")
    add("--quiet", action="store_true", help="no progress display; only the summary lines of the runs")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    configs = parse_configs(args.configs)
    batchsizes = parse_batchsizes(args.batchsizes)
    if args.weights != "random" and not Path(args.weights).is_file():
        raise UserError(f"{args.weights}: checkpoint not found (--weights takes a .pth file or 'random')")
    check_available(configs)
    date = today()
    workdir = Path(args.workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{workdir}: cannot create the work folder ({exc})") from None

    models, pth = prepare_models(workdir, args.weights, args.width, args.size, configs, batchsizes, args.threads)
    model_short, model_long = describe_model(pth, args.weights, args.size)
    fallback = describe_machine() + (", Ascend NPU" if any(b == "acl" for b, _ in configs) else "")
    runner = Runner(workdir, args.size, args.warmup, args.threads, args.device, args.quiet)
    rows, failures = [], []
    for backend, precision in configs:
        got, failed = run_config(runner, models, backend, precision, batchsizes, args.loop, args.max_seconds, date,
                                 fallback)
        rows += got
        failures += failed
    if not rows:
        raise UserError("every run failed; nothing to write (see the runs' output above and in "
                        f"{runner.out})")

    machine = max((r["machine"] for r in rows), key=len)  # the fullest: names the GPU where one was used
    heading = section_heading(machine, model_short, date)
    markdown = Path(args.markdown)
    plot = Path(args.plot) if args.plot else markdown.parent / "benchmarks" / f"{_slug(heading[3:], 120)}.png"
    from .report import plot_fps_vs_batch
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_fps_vs_batch(rows, plot, title=f"{model_short}\n{machine}, {date}")
    commands = [os.environ[COMMAND_ENV]] if os.environ.get(COMMAND_ENV) else []
    commands.append(python_command(args))
    link = Path(os.path.relpath(plot.resolve(), markdown.resolve().parent)).as_posix()
    section = render_section(heading, rows, model_long, commands, software_line(configs, args.threads), link,
                             failures)
    write_markdown(markdown, section)
    print(f"[benchmark] {len(rows)} rows in {markdown} (section '{heading[3:]}'), plot {plot}"
          + (f"; {len(failures)} run(s) failed" if failures else ""), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
