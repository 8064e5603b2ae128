"""Throughput tables: the runner in pure-inference mode over backend x precision x batch size.

    scripts/benchmark.sh                                   # the defaults for this machine (CPU or GPU)
    python3 -m unet_infer.speed --weights random --width 64 --size 572 --batchsizes 1,2,4 \
        --configs onnxruntime:fp32,onnxruntime:int8,torch:fp32,torch:bf16 --loop 100 --max-seconds 60

Every row is one run of the guide's performance command with our runner in place of ais_bench
(python3 -m unet_infer.bench --model=UNet_bs8.onnx --loop=100 --batchsize=8 ...). images/s = 1000 x
batch size / mean compute time of one batch (ms), host time excluded, as ais_bench counts it; p50
and p99: the compute time of one batch (ms). The rows run in --rounds interleaved rounds (the CPUs
may be shared) and show their medians; beside each openvino row, a bare OpenVINO session on the
same model (python3 -m unet_infer.speed.bare). Options not given take this machine's defaults,
printed. The models are made once under WORKDIR/models/ and reused while what they are made from
is unchanged. The table goes into --markdown as one section per machine, model and date: a second
run with the same three replaces that section and keeps every other one.
"""

import argparse
import importlib.metadata
import os
import shlex
import sys
import warnings
from pathlib import Path

from .. import backends, cli
from ..cli import UserError, int_list, positive_float
from ..formats import DEFAULT_SIZE, atomic_write_text
from ..machine import today
from ..parallel import cpu_count
from ..progress import set_quiet
from .models import RANDOM, RANDOM_SEED, describe_model, prepare_models, slug
from .runs import BARE_BACKEND, Job, Runner, benchmark_rows

PROG = "python3 -m unet_infer.speed"
COMMAND_ENV = "UNET_BENCH_COMMAND"  # set by scripts/benchmark.sh: the command line as the user typed it


DEFAULTS = {  # where the user gave none, as typed
    "CPU": {"batchsizes": "1,2,4", "max_seconds": "60",
            "configs": "onnxruntime:fp32,onnxruntime:int8,openvino:fp32,openvino:bf16,openvino:int8,"
                       "torch:fp32,torch:bf16"},
    "GPU": {"batchsizes": "1,4,8,16,32,64", "max_seconds": "120",
            "configs": "torch:fp32,torch:fp16,torch:bf16,onnxruntime:fp32"},
}
NO_LIMIT = "none"


def parse_configs(text):
    """``--configs``: ``"onnxruntime:fp32,torch:bf16"`` -> ``[("onnxruntime", "fp32"), ("torch", "bf16")]``
    (duplicates dropped); a backend or precision the registry does not declare is refused."""
    configs = []
    for part in [p.strip() for p in text.split(",")]:
        name, sep, precision = part.partition(":")
        if not sep or not name or not precision:
            raise argparse.ArgumentTypeError(f"{part!r} is not backend:precision (e.g. onnxruntime:fp32)")
        if name not in backends.names():
            raise argparse.ArgumentTypeError(f"unknown backend {name!r} in {part!r} ({backends.describe()})")
        if precision not in backends.get_backend(name).precisions:
            raise argparse.ArgumentTypeError(f"precision {precision} is not available on {name} in {part!r} "
                                             f"({backends.describe()})")
        if (name, precision) not in configs:
            configs.append((name, precision))
    return configs


def cuda_status():
    """``(True, "<GPU name> (torch V, CUDA C, N device(s))")`` where torch sees a CUDA GPU, else
    ``(False, why not)``: torch missing or failing to import, a CPU-only build, or no usable device
    (with the warning torch gave, if any). Imports torch; never raises."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        return False, "torch is not installed" if exc.name == "torch" else f"torch does not import: {exc}"
    except Exception as exc:  # noqa: BLE001 - a broken install is an answer, not a crash
        return False, f"torch does not import: {type(exc).__name__}: {exc}"
    version = getattr(torch, "__version__", "?")
    if not getattr(torch.version, "cuda", None):
        return False, f"torch {version} is a CPU-only build"
    said = ""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception as exc:  # noqa: BLE001 - a driver that fails to start is an answer too
            count, said = 0, f"{type(exc).__name__}: {exc}"
    if not count:
        said = " ".join((said or (str(caught[0].message) if caught else "")).split())
        return False, f"torch {version} (CUDA {torch.version.cuda}) sees no CUDA device" + (f": {said}" if said else "")
    devices = f"{count} device" + ("" if count == 1 else "s")
    return True, f"{torch.cuda.get_device_name(0)} (torch {version}, CUDA {torch.version.cuda}, {devices})"


def fill_defaults(batchsizes, configs, max_seconds):
    """``(batchsizes, configs, max_seconds, note)``, those not given (None) from this machine's defaults
    (of the configs, those that can run here: a default never asks to install anything), ``note``
    saying which; ``max_seconds`` :data:`NO_LIMIT` becomes None."""
    given = {"batchsizes": batchsizes, "configs": configs, "max_seconds": max_seconds}
    missing = [name for name, value in given.items() if value is None]
    note = None
    if missing:
        chosen = "GPU" if backends.has_gpu() else "CPU"
        defaults = DEFAULTS[chosen]
        parse = {"batchsizes": int_list, "max_seconds": float,
                 "configs": lambda text: [c for c in parse_configs(text) if backends.get_backend(c[0]).available()[0]]}
        given.update({name: parse[name](defaults[name]) for name in missing})
        why = "a CUDA GPU is available" if chosen == "GPU" else "no CUDA GPU"
        note = f"{why}: {chosen} defaults " + " ".join(f"--{n.replace('_', '-')} {defaults[n]}" for n in missing)
    seconds = None if given["max_seconds"] == NO_LIMIT else given["max_seconds"]
    return given["batchsizes"], given["configs"], seconds, note


def _by_machine(name):
    """A default that depends on the machine, as the help shows it."""
    return f"{DEFAULTS['CPU'][name]} on the CPU, {DEFAULTS['GPU'][name]} with a CUDA GPU"


def build_parser():
    parser = cli.parser(PROG, __doc__)
    add = parser.add_argument
    add("--weights", default=RANDOM, help=f"UNet checkpoint (.pth state_dict), or '{RANDOM}': UNet(width=--width), "
                                          f"seed {RANDOM_SEED}")
    add("--width", type=cli.int_at_least(1), default=64, help="width of the random UNet (64: the ModelZoo model)")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="input height = width")
    add("--batchsizes", type=cli.int_list,
        help=f"batch sizes, comma list; without it: {_by_machine('batchsizes')}")
    add("--configs", type=parse_configs, help=f"backend:precision, comma list ({backends.describe()}); without it: "
                                             f"{_by_machine('configs')}")
    add("--loop", type=cli.int_at_least(1), default=100, help="timed runs per row (ais_bench --loop)")
    add("--warmup", type=cli.int_at_least(0), default=2, help="untimed runs first (ais_bench --warmup_count)")
    add("--rounds", type=cli.int_at_least(1), default=3,
        help="interleaved rounds: every row runs once per round; a row's figures are its rounds' medians")
    add(*cli.flag("no_bare"), dest="bare", action="store_false",
        help="leave out the bare OpenVINO session beside each openvino row")
    add(*cli.flag("max_seconds"), dest="max_seconds",
        type=lambda text: text if text == NO_LIMIT else positive_float(text),
        help="about the most seconds one row may take: the loop count is cut (down to 1) to fit; 'none': no "
             f"limit; without it: {_by_machine('max_seconds')}")
    add("--workdir", default="work/bench", help="folder for the models and the runs")
    add("--markdown", help="the markdown file whose section for this machine, model and date is written; "
                           "without it: BENCHMARKS.md in --workdir (the repository's BENCHMARKS.md only when "
                           "named: scripts/benchmark.sh publish=1)")
    add("--plot", help="the PNG plot of images/s against batch size; without it: benchmarks/<section>.png "
                       "beside --markdown")
    add("--threads", type=cli.int_at_least(1), help="CPU threads per run; without it: the runner's (every CPU)")
    add("--device", type=cli.int_at_least(0), help="device id of the runs; without it: the runner's (0)")
    cli.add_quiet(parser)
    add("--cuda", action="store_true", help="only say, in one line, whether torch sees a CUDA GPU here (scripts/"
                                            "gpu_check.sh's probe: its steps run torch), and exit: 0 it does, 1 it "
                                            "does not; runs nothing")
    return parser


def _show(path):
    """A path as the command shows it: relative to the current folder when it is inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


def python_command(args, batchsizes, configs, max_seconds):
    """The python3 -m unet_infer.speed command with every option spelled out (defaults resolved)."""
    parts = [*PROG.split(), "--weights", args.weights if args.weights == RANDOM else _show(args.weights),
             "--width", str(args.width), "--size", str(args.size), "--batchsizes", ",".join(map(str, batchsizes)),
             "--configs", ",".join(f"{b}:{p}" for b, p in configs), "--loop", str(args.loop),
             "--warmup", str(args.warmup), "--rounds", str(args.rounds),
             "--max-seconds", "none" if max_seconds is None else f"{max_seconds:g}",
             "--workdir", _show(args.workdir), "--markdown", _show(args.markdown)]
    if args.plot:
        parts += ["--plot", _show(args.plot)]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    if args.device is not None:
        parts += ["--device", str(args.device)]
    if not args.bare:
        parts.append("--no-bare")
    return shlex.join(parts)


# ---- BENCHMARKS.md: its header, one section per machine, model and date (keyed by its "## " line) ----

HEADER = """# UNet inference benchmarks

Made by `scripts/benchmark.sh` (`python3 -m unet_infer.speed`): our ais_bench-compatible runner
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


COLUMNS = {  # a table column's title: the cell it shows for a row (a dict of runs.make_row)
    "Backend": lambda r: r["backend"],
    "Precision": lambda r: r["precision"] + (f" (ran {r['ran']})" if r.get("ran") not in (None, r["precision"])
                                             else ""),
    "Batch size": lambda r: r["batchsize"],
    "images/s": lambda r: f"{r['fps']:.2f}",
    "p50 ms/batch": lambda r: f"{r['p50']:.2f}",
    "p99 ms/batch": lambda r: f"{r['p99']:.2f}",
    "ms/image": lambda r: f"{r['ms_per_image']:.2f}",
    "loop": lambda r: r["loop"],
    "Machine": lambda r: r["machine"],
    "Date": lambda r: r["date"],
    "images/s range": lambda r: f"{r['fps_min']:.2f}-{r['fps_max']:.2f}" if "fps_min" in r else "",
    "rounds": lambda r: r.get("rounds", 1),
    "load 1 min": lambda r: "" if r.get("load") is None else f"{r['load']:.1f}" + (
        f" (max {r['load_max']:.1f})" if r.get("load_max") not in (None, r["load"]) else ""),
    "bare OpenVINO images/s": lambda r: f"{r['bare_fps']:.2f}" if r.get("bare_fps") else "",
    "runner / bare": lambda r: f"{r['vs_bare']:.2f}" if r.get("vs_bare") else "",
}
ROUNDS_NOTE = ("images/s, p50, p99 and ms/image: medians of {rounds} interleaved round(s) (every row once per "
               "round, {warmup} warm-up run(s) each); images/s range: lowest-highest round; load 1 min: the "
               "1-minute load average when each run started (median, max): these CPUs may be shared. "
               "bare OpenVINO: a plain OpenVINO session (core.compile_model with its defaults, the row's "
               "precision hint) on the same model, run after the runner in each round "
               "(python3 -m unet_infer.speed.bare).")


def section_heading(machine, model, date):
    """The key of a section: its ``## `` line."""
    return f"## {machine} · {model} · {date}"


def render_section(heading, rows, model_long, commands, software, plot_link=None, failures=(), note=None):
    """The markdown of one section (heading, model, software, commands, note, table, failures, plot)."""
    lines = [heading, "", f"Model: {model_long}.", "", f"Software: {software}.", "", "Command:", "", "```bash"]
    lines += list(commands) + ["```", ""] + ([note, ""] if note else [])
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(cell(row)).replace("|", "\\|").replace("\n", " ") for cell in COLUMNS.values())
              + " |" for row in rows]
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
    """``text`` (a BENCHMARKS.md, or "") under our header, with ``section`` in place of its namesake or appended."""
    heading = section.splitlines()[0].rstrip()
    kept = [section if old.splitlines()[0].rstrip() == heading else old for old in split_sections(text)[1]]
    if section not in kept:
        kept.append(section)
    return HEADER.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in kept)


def check_markdown(path):
    """``path`` can take a section: not a folder, readable when it exists (before any run)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a markdown file")
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None


def software_line(configs, threads):
    """``Python 3.x, onnxruntime 1.y, torch 2.z, N CPU threads``: the packages of the configs' backends."""
    parts = [f"Python {sys.version.split()[0]}"]
    for cls in dict.fromkeys(backends.get_backend(name) for name, _ in configs):
        if not cls.package:
            parts.append(f"{cls.name} backend")
            continue
        try:
            parts.append(f"{cls.package} {importlib.metadata.version(cls.package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(cls.package)
    parts.append(f"{threads or cpu_count()} CPU threads")
    return ", ".join(parts)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.cuda:
        ok, text = cuda_status()
        print(f"cuda: {text}" if ok else f"no CUDA here ({text})")
        return 0 if ok else 1
    set_quiet(args.quiet)
    if args.weights != RANDOM and not Path(args.weights).is_file():
        raise UserError(f"{args.weights}: checkpoint not found (--weights takes a .pth file or '{RANDOM}')")
    args.markdown = args.markdown or str(Path(args.workdir) / "BENCHMARKS.md")
    check_markdown(args.markdown)
    batchsizes, configs, max_seconds, note = fill_defaults(args.batchsizes, args.configs, args.max_seconds)
    if note:
        print(f"[benchmark] {note}", flush=True)
    for name in dict.fromkeys(name for name, _ in configs):  # every backend asked for can run here
        ok, why = backends.get_backend(name).available()
        if not ok:
            raise UserError(f"--configs: {why}")
    workdir = Path(args.workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cli.os_error(workdir, exc, "create the work folder") from None

    models = prepare_models(workdir, args.weights, args.width, args.size, configs, batchsizes, args.threads)
    model_short, model_long = describe_model(models.pth, args.weights, args.size)
    runner = Runner(workdir, args.size, args.warmup, args.threads, args.device, args.quiet)
    date = today()
    bare = args.bare and any(backend == BARE_BACKEND for backend, _ in configs)
    config_jobs = [[Job(backend, precision, bs, models.paths[backend, precision, bs]) for bs in batchsizes]
                   for backend, precision in configs]
    rows, failures = benchmark_rows(runner, config_jobs, args.loop, max_seconds, date, args.rounds, bare)
    if not rows:
        raise UserError(f"every run failed; nothing to write (see the runs' output above and in {runner.out})")

    machine = max((r["machine"] for r in rows), key=len)  # the fullest: names the GPU where one was used
    heading = section_heading(machine, model_short, date)
    markdown = Path(args.markdown)
    plot = Path(args.plot) if args.plot else markdown.parent / "benchmarks" / f"{slug(heading[3:], 120)}.png"
    from ..figures import plot_fps_vs_batch, plural
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_fps_vs_batch(rows, plot, title=f"{model_short}\n{machine}, {date}")
    commands = [os.environ[COMMAND_ENV]] if os.environ.get(COMMAND_ENV) else []
    commands.append(python_command(args, batchsizes, configs, max_seconds))
    link = Path(os.path.relpath(plot.resolve(), markdown.resolve().parent)).as_posix()  # as the markdown sees it
    section = render_section(heading, rows, model_long, commands, software_line(configs, args.threads), link,
                             failures, note=ROUNDS_NOTE.format(rounds=args.rounds, warmup=args.warmup))
    old = check_markdown(markdown)  # read again: another run may have written its section meanwhile
    markdown.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(markdown, merge_section(old, section))
    print(f"[benchmark] {plural(len(rows), 'row')} in {args.markdown} (section '{heading[3:]}'), "
          f"plot {plot}" + (f"; {len(failures)} run(s) failed" if failures else ""), flush=True)
    return 1 if failures else 0
