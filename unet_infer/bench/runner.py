"""An ais_bench-compatible runner for every backend of the registry (.om models are handed to ais_bench itself).

The guide's commands, with this runner in place of ``python3 -m ais_bench``:

  inference on the preprocessed images, outputs to result/bs8/<stem>_0.bin, summary to result/bs8_summary.json:
    python3 -m unet_infer.bench --model=UNet_bs8.onnx --input=./prep_bin --output=result --output_dirname=bs8 --batchsize=8

  pure inference (zero data, nothing saved) for the throughput:
    python3 -m unet_infer.bench --model=UNet_bs8.onnx --loop=100 --batchsize=8

  the checkpoint itself on PyTorch, in bf16:
    python3 -m unet_infer.bench --model=UNet.pth --loop=10 --batchsize=8 --precision=bf16

The compute time covers only the model run; file reading and writing and the
host-device copies (H2D, D2H) are timed apart. throughput = 1000 x batchsize / mean compute time
(ms). In openvino's throughput mode (``--nireq N``: N runs in flight) the summary adds the
wall-clock images/s the N requests delivered together.
"""

from .. import backends, cli, session
from ..cli import UserError
from ..formats import DEFAULT_SIZE
from ..parallel import cpu_count
from ..progress import set_quiet
from .files import OUTFMT_SUFFIX
from .devices import run_devices
from .run import bench, check_profile_target, run_place

AIS_BENCH_FLAGS = ("model", "input", "output", "output_dirname", "outfmt", "loop", "batchsize", "warmup_count",
                   "device", "pure_data_type", "display_all_summary")


def ais_bench_argv(args, parser):
    """``--model`` and the other ais_bench flags the user set (underscore spelling, ``--name=value``)."""
    defaults = vars(parser.parse_args(["--model", args.model]))
    argv = []
    for dest in AIS_BENCH_FLAGS:
        value = getattr(args, dest)
        if dest == "model" or value != defaults[dest]:
            argv.append(f"--{dest}={','.join(map(str, value)) if isinstance(value, list) else value}")
    return argv


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.bench", __doc__)
    add = parser.add_argument
    add("--model", "-m", required=True, help=f"model file: {session.model_files(in_process=False)}")
    add("--input", "-i", help="a .bin/.npy file, a folder of them, or a comma list of files and folders "
                              "(ais_bench's forms; several folders: one per model input), grouped into batches "
                              "by size; without it: pure inference on generated data")
    add("--output", "-o", help="folder for the results; nothing is saved without it")
    add(*cli.flag("output_dirname"), dest="output_dirname",
        help="subfolder of --output for this run (a run of the runner stopped there half way is replaced; another that holds files is refused); without it: a timestamp")
    add("--outfmt", default="BIN", choices=list(OUTFMT_SUFFIX), help="output file format")
    add("--loop", "-l", type=cli.int_at_least(1), default=1, help="runs of each batch (all timed)")
    add("--time", "-t", type=cli.positive_float, metavar="SECONDS",
        help="run for at least this many seconds (wall clock of the timed runs): after the first pass, more "
             "passes over the inputs (not written again), or more runs of pure inference")
    add("--batchsize", type=cli.int_at_least(1), help="batch size of a dynamic-batch model (without it: 1); "
                                                       "a fixed-batch model uses its own")
    add(*cli.flag("warmup_count"), dest="warmup_count", type=cli.int_at_least(0), default=1,
        help="untimed runs first")
    add("--device", "-d", type=cli.device_list, default="0",
        help="device id, or a comma list: one process per device at once, the --input files divided among them "
             "(docs/cluster.md); on a backend that runs on the CPU, each is a CPU shard with --threads / N "
             "threads")
    add(*cli.flag("pure_data_type"), dest="pure_data_type", default="zero", choices=["zero", "random"],
        help="data of the pure-inference mode")
    add(*cli.flag("display_all_summary"), dest="display_all_summary", type=cli.str2bool, nargs="?", const=True,
        default=False, help="also print the H2D and D2H latencies")
    session.add_backend_flags(parser)
    add("--profile", metavar="FILE.json", help=f"per-layer times from the backend's own profiler "
        f"({', '.join(backends.profilers())}) to this file; the slowest layers are printed")
    add("--threads", type=cli.int_at_least(1), default=cpu_count(), help="CPU threads for the model")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE,
        help="input height = width for .pth models (and dynamic H, W of an ONNX model)")
    cli.add_quiet(parser)
    args, unknown = parser.parse_known_args(argv)
    set_quiet(args.quiet)
    status = session.hand_over(args, lambda: ais_bench_argv(args, parser) + unknown)  # acl: ais_bench runs it
    if status is not None:
        return status
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    choice = session.choose(args, "the runner")
    if args.output_dirname and not args.output:
        raise UserError("--output_dirname needs --output")
    if args.profile:
        if len(args.device) > 1:
            raise UserError("--profile profiles one run: give one --device")
        check_profile_target(args.profile, choice.cls)
    if len(args.device) > 1:
        run_devices(args, choice)
        return None
    bench(args, choice, args.device[0], *run_place(args))
