"""An ais_bench-compatible runner for every backend of the registry (.om models are handed to ais_bench itself).

The guide's commands, with this runner in place of ``python3 -m ais_bench``:

  inference on the preprocessed images, outputs to result/bs8/<stem>_0.bin, summary to result/bs8_summary.json:
    python3 -m unet_infer.bench --model=UNet_bs8.onnx --input=./prep_bin --output=result --output_dirname=bs8 --batchsize=8

  pure inference (zero data, nothing saved) for the throughput:
    python3 -m unet_infer.bench --model=UNet_bs8.onnx --loop=100 --batchsize=8

  the checkpoint itself on PyTorch, in bf16:
    python3 -m unet_infer.bench --model=UNet.pth --loop=10 --batchsize=8 --precision=bf16

The compute time covers only the model run; file reading and writing and the host-device copies
(H2D, D2H) are timed apart. throughput = 1000 x batchsize / mean compute time (ms). In openvino's
throughput mode (``--nireq N``: N runs in flight) the summary adds the wall-clock images/s the N
requests delivered together.
"""

import logging
import os
import time
from pathlib import Path

import numpy as np

from .. import backends, cli
from ..cli import UserError
from ..formats import DEFAULT_SIZE, inside
from ..machine import describe_machine
from ..parallel import default_threads
from ..progress import progress, set_quiet
from ..summary import build_summary, in_flight_keys, performance_lines, write_summary
from .batching import OUTFMT_SUFFIX, first_clash, plan_batches
from .files import OutputWriter, file_feeds, list_inputs, plan_files_per_batch, pure_data
from .loop import Timings, run_loop, warm_up
from .profile import check_profile_target, save_profile

log = logging.getLogger(__name__)

AIS_BENCH_FLAGS = ("model", "input", "output", "output_dirname", "outfmt", "loop", "batchsize", "warmup_count",
                   "device", "pure_data_type", "display_all_summary")


def add_backend_flags(parser):
    """--backend, --precision and every backend's own options (each checked against the backend in use)."""
    add = parser.add_argument
    add("--backend", choices=backends.names(), help="without it: from the model's suffix")
    add("--precision", choices=backends.precisions(),
        help=f"compute precision ({backends.describe()}); without it: the model's own, else the backend's "
             f"first")
    for cls in backends.all_backends():
        for option in cls.options:
            if option.type is None:
                add(*option.flags, dest=option.dest, action="store_true", help=option.help)
            else:
                add(*option.flags, dest=option.dest, type=option.type, default=option.default, help=option.help)


def backend_options(args, cls):
    """The chosen backend's options from ``args``; another backend's option set is a UserError."""
    for other in backends.all_backends():
        if other is cls:
            continue
        for option in other.options:
            if option.is_set(getattr(args, option.dest)) and option.dest not in [o.dest for o in cls.options]:
                raise UserError(f"--{option.dest} is an option of the {other.name} backend, not of {cls.name}")
    return {option.dest: getattr(args, option.dest) for option in cls.options}


def build_parser():
    parser = cli.parser("python3 -m unet_infer.bench", __doc__)
    add = parser.add_argument
    add("--model", "-m", required=True, help="model file: " + ", ".join(
        f"{'/'.join(cls.model_suffixes)} ({cls.name})" for cls in backends.all_backends()))
    add("--input", "-i", help="folder of .bin/.npy inputs, or comma-separated folders, one per model input; "
                              "without it: pure inference on generated data")
    add("--output", "-o", help="folder for the results; nothing is saved without it")
    add(*cli.flag("output_dirname"), dest="output_dirname",
        help="subfolder of --output for this run; without it: a timestamp")
    add("--outfmt", default="BIN", choices=list(OUTFMT_SUFFIX), help="output file format")
    add("--loop", "-l", type=cli.int_at_least(1), default=1, help="runs of each batch (all timed)")
    add("--batchsize", type=cli.int_at_least(1), help="batch size of a dynamic-batch model (without it: 1); "
                                                       "a fixed-batch model uses its own")
    add(*cli.flag("warmup_count"), dest="warmup_count", type=cli.int_at_least(0), default=1,
        help="untimed runs first")
    add("--device", "-d", type=cli.device_list, default="0",
        help="device id, or a comma list: one process per device at once, the --input files divided among them "
             "(see bench/devices.py); on a backend that runs on the CPU, each is a CPU shard with --threads / N "
             "threads")
    add(*cli.flag("pure_data_type"), dest="pure_data_type", default="zero", choices=["zero", "random"],
        help="data of the pure-inference mode")
    add(*cli.flag("display_all_summary"), dest="display_all_summary", type=cli.str2bool, nargs="?", const=True,
        default=False, help="also print the H2D and D2H latencies")
    add_backend_flags(parser)
    add("--profile", metavar="FILE.json", help="per-layer times from the backend's own profiler (onnxruntime, "
                                               "openvino) to this file; the slowest layers are printed")
    add("--threads", type=cli.int_at_least(1), default=default_threads(), help="CPU threads for the model")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE,
        help="input height = width for .pth models (and dynamic H, W of an ONNX model)")
    cli.add_quiet(parser)
    return parser


def ais_bench_argv(args, parser):
    """``--model`` and the other ais_bench flags the user set (underscore spelling, ``--name=value``)."""
    defaults = vars(parser.parse_args(["--model", args.model]))
    argv = []
    for dest in AIS_BENCH_FLAGS:
        value = getattr(args, dest)
        if dest == "model" or value != defaults[dest]:
            argv.append(f"--{dest}={','.join(map(str, value)) if isinstance(value, list) else value}")
    return argv


def refuse_output_in_input(out_dir, inputs):
    """Outputs written into an input folder would be read as inputs by the next run: refused."""
    for folder in inputs:
        folder = Path(folder).resolve()
        target = Path(out_dir).resolve()
        if target == folder or folder in target.parents:
            raise UserError(f"{out_dir}: inside the input folder {folder}; write the outputs elsewhere")


def refuse_existing_run(out_dir, summary_path):
    """Never mix two runs: an output folder with files in it, or an existing summary, is a UserError."""
    if summary_path.exists() or (out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))):
        raise UserError(f"{out_dir} already holds a run; choose another --output_dirname, or leave it out "
                        f"for a new timestamped folder (as ais_bench does)")


def run_places(args):
    """``[(device, output folder, summary path)]`` of a one-device run (several: ``devices.device_places``)."""
    if not args.output:
        return [(device, None, None) for device in args.device]
    dirname = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
    if inside(args.output, dirname) is None:
        raise UserError(f"--output_dirname {dirname!r} must be a plain folder name")
    base = Path(args.output) / dirname
    places = [(args.device[0], base, Path(args.output) / f"{dirname}_summary.json")]  # several: devices.py
    for _, out_dir, summary_path in places:
        if args.input:
            refuse_output_in_input(out_dir, [p for p in args.input.split(",") if p])
        refuse_existing_run(out_dir, summary_path)
    return places


def make_dirs(out_dir):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cli.os_error(out_dir, exc, "create the output folder") from None


def run_files(args, backend, inputs, out_dir, timings):
    """Every batch of the input folders, ``--loop`` runs each; the filesinfo of what was saved."""
    per_batch = plan_files_per_batch(inputs, backend.inputs)
    batches = plan_batches(len(inputs[0]), per_batch)
    log.info("%d files, %d per batch, %d batches", len(inputs[0]), per_batch, len(batches))
    clash = first_clash(inputs[0], args.outfmt) if out_dir else None
    if clash:
        raise UserError(f"{clash[0]} and {clash[1]} would write the same output files")
    feeds = file_feeds(batches, inputs, backend.inputs, per_batch, timings)
    first = next(feeds)
    warm_up(backend, first[0], args.warmup_count)
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


def run_pure(args, backend, out_dir, timings):
    """``--loop`` runs on generated data of the model's input shape; nothing but the summary is saved."""
    arrays = [pure_data(spec, args.pure_data_type, np.random.default_rng()) for spec in backend.inputs]
    warm_up(backend, arrays, args.warmup_count)
    if out_dir:
        make_dirs(out_dir)
    with progress(total=args.loop, desc="Inference", unit="run") as bar:
        run_loop(backend, [(arrays, None)], lambda tag, outputs: None, timings, loop=args.loop,
                 on_run=lambda: bar.update(1))
    return {}


def bench(args, backend_cls, device, out_dir=None, summary_path=None, inputs=None, timings=None):
    """One run on one device: load, warm up, time, save; prints the Performance Summary; returns the summary."""
    started = time.perf_counter()
    if inputs is None:  # a device of --device 0,1 gets its shard of the input lists
        inputs = list_inputs(args.input) if args.input else None
    backend = backend_cls()
    backend.load(args.model, batchsize=args.batchsize, device=device, precision=args.precision,
                 threads=args.threads, size=args.size, **backend_options(args, backend_cls),
                 **({"profile": True} if getattr(args, "profile", None) else {}))
    timings = Timings() if timings is None else timings
    try:
        if inputs:
            filesinfo = run_files(args, backend, inputs, out_dir, timings)
        else:
            filesinfo = run_pure(args, backend, out_dir, timings)
        profiled = save_profile(args.profile, backend, args.model) if getattr(args, "profile", None) else []
    finally:
        backend.close()
    extra = {"backend": backend.name, "precision": backend.precision,
             "machine": describe_machine(backend.device_name(device)), "mode": "files" if inputs else "pure",
             "model": str(Path(args.model).resolve()), "weights": backend.weights,
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


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    set_quiet(args.quiet)
    name = args.backend or backends.backend_for_model(args.model)
    backend_cls = backends.get_backend(name)
    if backend_cls.external:
        return backend_cls.run_external(ais_bench_argv(args, parser) + unknown)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    backends.usable_backend(name)
    if args.output_dirname and not args.output:
        raise UserError("--output_dirname needs --output")
    if args.precision is not None:
        backend_cls.check_precision(args.precision)
    if args.profile:
        if len(args.device) > 1:
            raise UserError("--profile profiles one run: give one --device")
        check_profile_target(args.profile, backend_cls)
    if len(args.device) > 1:
        from .devices import run_devices
        run_devices(args, backend_cls)
        return None
    for device, out_dir, summary_path in run_places(args):
        bench(args, backend_cls, device, out_dir, summary_path)
