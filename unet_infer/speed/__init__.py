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

import os
import shlex
from pathlib import Path

from .. import backends, cli
from ..cli import UserError
from ..formats import DEFAULT_SIZE
from ..machine import describe_machine, today
from ..progress import set_quiet
from .configs import CPU, GPU, check_available, configs_type, cuda_status, fill_defaults, max_seconds_type
from .markdown import (ROUNDS_NOTE, check_markdown, link, plot_path, render_section, section_heading, software_line,
                       write_markdown)
from .models import RANDOM, RANDOM_SEED, describe_model, prepare_models
from .runs import BARE_BACKEND, Job, Runner, benchmark_rows

PROG = "python3 -m unet_infer.speed"
COMMAND_ENV = "UNET_BENCH_COMMAND"  # set by scripts/benchmark.sh: the command line as the user typed it


def _by_machine(name):
    """A default that depends on the machine, as the help shows it."""
    return f"{getattr(CPU, name)} on the CPU, {getattr(GPU, name)} with a CUDA GPU"


def build_parser():
    parser = cli.parser(PROG, __doc__)
    add = parser.add_argument
    add("--weights", default=RANDOM, help=f"UNet checkpoint (.pth state_dict), or '{RANDOM}': UNet(width=--width), "
                                          f"seed {RANDOM_SEED}")
    add("--width", type=cli.int_at_least(1), default=64, help="width of the random UNet (64: the ModelZoo model)")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="input height = width")
    add("--batchsizes", type=cli.int_list,
        help=f"batch sizes, comma list; without it: {_by_machine('batchsizes')}")
    add("--configs", type=configs_type, help=f"backend:precision, comma list ({backends.describe()}); without it: "
                                             f"{_by_machine('configs')}")
    add("--loop", type=cli.int_at_least(1), default=100, help="timed runs per row (ais_bench --loop)")
    add("--warmup", type=cli.int_at_least(0), default=2, help="untimed runs first (ais_bench --warmup_count)")
    add("--rounds", type=cli.int_at_least(1), default=3,
        help="interleaved rounds: every row runs once per round; a row's figures are its rounds' medians")
    add(*cli.flag("no_bare"), dest="bare", action="store_false",
        help="leave out the bare OpenVINO session beside each openvino row")
    add(*cli.flag("max_seconds"), dest="max_seconds", type=max_seconds_type,
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


def fallback_machine(backend):
    """The machine of a row whose summary names none (ais_bench's own summaries), with the device
    the backend declares where its runs use one of their own (``accelerator``)."""
    device = backends.get_backend(backend).accelerator
    return describe_machine() + (f", {device}" if device else "")


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
    check_available(configs)
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
    rows, failures = benchmark_rows(runner, config_jobs, args.loop, max_seconds, date,
                                    fallback_machine, rounds=args.rounds, bare=bare)
    if not rows:
        raise UserError(f"every run failed; nothing to write (see the runs' output above and in {runner.out})")

    machine = max((r["machine"] for r in rows), key=len)  # the fullest: names the GPU where one was used
    heading = section_heading(machine, model_short, date)
    plot = Path(args.plot) if args.plot else plot_path(args.markdown, heading)
    from ..report.plots import plot_fps_vs_batch
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_fps_vs_batch(rows, plot, title=f"{model_short}\n{machine}, {date}")
    commands = [os.environ[COMMAND_ENV]] if os.environ.get(COMMAND_ENV) else []
    commands.append(python_command(args, batchsizes, configs, max_seconds))
    section = render_section(heading, rows, model_long, commands, software_line(configs, args.threads),
                             link(plot, args.markdown), failures,
                             note=ROUNDS_NOTE.format(rounds=args.rounds, warmup=args.warmup))
    write_markdown(args.markdown, section)
    print(f"[benchmark] {len(rows)} row{'s' if len(rows) != 1 else ''} in {args.markdown} (section '{heading[3:]}'), plot {plot}"
          + (f"; {len(failures)} run(s) failed" if failures else ""), flush=True)
    return 1 if failures else 0
