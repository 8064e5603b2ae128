"""An ais_bench-compatible runner for .onnx and .pth models (.om models are handed to ais_bench itself).

The guide's commands, with this runner in place of ``python3 -m ais_bench``:

  inference on the preprocessed images, outputs to result/bs8/<stem>_0.bin, summary to result/bs8_summary.json:
    python3 -m unet_infer.bench --model=UNet_bs8.onnx --input=./prep_bin --output=result --output_dirname=bs8 --batchsize=8

  pure inference (zero data, nothing saved) for the throughput:
    python3 -m unet_infer.bench --model=UNet_bs8.onnx --loop=100 --batchsize=8

The compute time covers only the model run; file reading and writing and the host-device copies
(H2D, D2H) are timed apart. throughput = 1000 x batchsize / mean compute time (ms).
"""

import argparse
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..backends import backend_for_model, get_backend
from ..errors import HelpFormatter, UserError, int_at_least
from ..formats import DEFAULT_SIZE, INPUT_SUFFIXES, atomic_write_bytes, inside, list_files, read_array
from ..progress import progress, set_quiet
from ..machine import describe_machine
from ..summary import build_summary, performance_lines, write_summary
from .batching import OUTFMT_SUFFIX, first_clash, files_per_batch, output_name, plan_batches

log = logging.getLogger(__name__)

AIS_BENCH_FLAGS = ("model", "input", "output", "output_dirname", "outfmt", "loop", "batchsize", "warmup_count",
                   "device", "pure_data_type", "display_all_summary")


def _str2bool(text):
    if text.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if text.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true, 1, false, 0)")


def _devices(text):
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a device id or a comma list of them") from None
    if any(not 0 <= i <= 255 for i in ids):
        raise argparse.ArgumentTypeError(f"{text}: device ids go from 0 to 255")
    return ids


def default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def build_parser():
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.bench", description=__doc__, allow_abbrev=False,
                                     formatter_class=HelpFormatter)
    add = parser.add_argument
    add("--model", "-m", required=True, help="model file: .onnx, .pth/.pt (a UNet state_dict) or .om")
    add("--input", "-i", help="folder of .bin/.npy inputs, or comma-separated folders, one per model input; "
                              "without it: pure inference on generated data")
    add("--output", "-o", help="folder for the results; nothing is saved without it")
    add("--output_dirname", "--output-dirname", help="subfolder of --output for this run; without it: a timestamp")
    add("--outfmt", default="BIN", choices=list(OUTFMT_SUFFIX), help="output file format")
    add("--loop", "-l", type=int_at_least(1), default=1, help="runs of each batch (all timed)")
    add("--batchsize", type=int_at_least(1), help="batch size of a dynamic-batch model (without it: 1); "
                                                   "a fixed-batch model uses its own")
    add("--warmup_count", "--warmup-count", type=int_at_least(0), default=1, help="untimed runs first")
    add("--device", "-d", type=_devices, default="0", help="device id, or a comma list: one run per device")
    add("--pure_data_type", "--pure-data-type", default="zero", choices=["zero", "random"],
        help="data of the pure-inference mode")
    add("--display_all_summary", "--display-all-summary", type=_str2bool, nargs="?", const=True, default=False,
        help="also print the H2D and D2H latencies")
    add("--backend", choices=["onnxruntime", "torch", "acl"], help="without it: from the model's suffix")
    add("--precision", default="fp32", choices=["fp32", "fp16", "bf16"], help="torch backend: compute precision")
    add("--torch_compile", "--torch-compile", action="store_true",
        help="torch backend: torch.compile the model (compiled before the timed runs)")
    add("--cuda_graph", "--cuda-graph", action="store_true",
        help="torch backend on CUDA: replay the model as a CUDA graph")
    add("--threads", type=int_at_least(1), default=default_threads(), help="CPU threads for the model")
    add("--size", type=int_at_least(1), default=DEFAULT_SIZE,
        help="input height = width for .pth models (and dynamic H, W of an ONNX model)")
    add("--quiet", action="store_true", help="no progress display")
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


def list_inputs(spec):
    """The input files of each comma-separated folder, natural order; an empty folder is a UserError."""
    lists = []
    for folder in [part for part in spec.split(",") if part]:
        files = list_files(folder, INPUT_SUFFIXES)
        if not files:
            raise UserError(f"{folder}: no .bin or .npy files in the input folder")
        lists.append(files)
    if any(len(files) != len(lists[0]) for files in lists):
        raise UserError(f"--input: the folders hold {[len(f) for f in lists]} files; they must hold as many each")
    return lists


def data_nbytes(path):
    """Bytes of data in an input file: the array's for .npy, the file's for raw .bin."""
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False).nbytes
        except (ValueError, OSError) as exc:
            raise UserError(f"{path}: not a readable .npy file ({exc})") from None
    return path.stat().st_size


def plan_files_per_batch(inputs, specs):
    """Files per batch from input 0's first file; every file must have its folder's first file's size."""
    if len(inputs) != len(specs):
        raise UserError(f"--input names {len(inputs)} folder(s); the model has {len(specs)} input(s): "
                        f"{', '.join(s.name for s in specs)}")
    firsts = []
    for files in inputs:
        first = data_nbytes(files[0])
        for path in files[1:]:
            nbytes = data_nbytes(path)
            if nbytes != first:
                raise UserError(f"{path}: {nbytes} bytes, expected {first} (the size of {files[0]})")
        firsts.append(first)
    per_batch = files_per_batch(specs[0].nbytes, firsts[0], inputs[0][0])
    for files, spec, first in zip(inputs[1:], specs[1:], firsts[1:]):
        if first * per_batch != spec.nbytes:
            raise UserError(f"{files[0]}: {first} bytes, expected {spec.nbytes // per_batch} "
                            f"({per_batch} files per batch of input {spec.name} {spec.shape})")
    return per_batch


def read_batch(paths, spec, per_batch):
    """One batch of one input from ``per_batch`` files, their bytes laid end to end (as ais_bench does)."""
    batch = np.empty(spec.shape, spec.dtype)
    flat = batch.reshape(-1).view(np.uint8)
    share = spec.nbytes // per_batch
    for slot, path in enumerate(paths):
        data = np.ascontiguousarray(read_array(path)).reshape(-1).view(np.uint8)
        if data.size != share:
            raise UserError(f"{path}: {data.size} bytes, expected {share}")
        flat[slot * share:(slot + 1) * share] = data
    return batch


def pure_data(spec, kind, rng):
    """Pure-inference data: zeros, or uniform [0, 1) floats / random bytes for other types."""
    if kind == "zero":
        return np.zeros(spec.shape, spec.dtype)
    if np.issubdtype(spec.dtype, np.floating):
        return rng.random(spec.shape).astype(spec.dtype)
    return rng.integers(0, 256, spec.nbytes, dtype=np.uint8).view(spec.dtype).reshape(spec.shape)


def encode(array, outfmt):
    """The bytes of an output file: raw (BIN, like ``tofile``), .npy, or ais_bench's text rows."""
    if outfmt == "NPY":
        buf = io.BytesIO()
        np.save(buf, array)
        return buf.getvalue()
    if outfmt == "TXT":
        rows = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
        text = io.StringIO()
        np.savetxt(text, rows, fmt="%f" if np.issubdtype(rows.dtype, np.floating) else "%d", newline=" \n")
        return text.getvalue().encode()
    return np.ascontiguousarray(array).tobytes()


class Timings:
    """Milliseconds per call: compute (``run``), H2D (``upload``), D2H (``download``); file I/O totals."""

    def __init__(self):
        self.compute, self.h2d, self.d2h = [], [], []
        self.read_ms = self.write_ms = 0.0

    def time(self, bucket, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        getattr(self, bucket).append((time.perf_counter() - start) * 1000.0)
        return result


def run_batch(backend, arrays, loop, timings):
    """Upload once, run ``loop`` times, download the last outputs."""
    inputs = timings.time("h2d", backend.upload, *arrays)
    for _ in range(loop):
        outputs = timings.time("compute", backend.run, *inputs)
    return timings.time("d2h", backend.download, outputs)


def warm_up(backend, arrays, count):
    """Untimed runs, so that lazy initialisation stays out of the timings."""
    if count:
        inputs = backend.upload(*arrays)
        for _ in range(count):
            backend.run(*inputs)


def split_output(output, per_batch, k):
    """One piece per input file along axis 0 (the whole output when a file fills the batch)."""
    if per_batch == 1:
        return [output]
    if output.ndim == 0 or output.shape[0] % per_batch:
        raise UserError(f"output {k} has shape {output.shape}: axis 0 does not split into {per_batch} files")
    return np.split(output, per_batch, axis=0)


def save_outputs(outputs, batch, inputs, per_batch, out_dir, outfmt):
    """Write the real slots' outputs; the filesinfo entries ``{sample_id: {infiles, outfiles}}``."""
    pieces = [split_output(out, per_batch, k) for k, out in enumerate(outputs)]
    entries = {}
    for sample_id, slot in batch.samples():
        infiles = [files[batch.files[slot]] for files in inputs]
        outfiles = [out_dir / output_name(infiles[0], k, outfmt) for k in range(len(pieces))]
        for path, piece in zip(outfiles, pieces):
            atomic_write_bytes(path, encode(piece[slot], outfmt))
        entries[sample_id] = {"infiles": infiles, "outfiles": outfiles}
    return entries


def run_files(args, backend, inputs, out_dir, timings):
    """Every batch of the input folders, ``--loop`` runs each; the filesinfo of what was saved."""
    per_batch = plan_files_per_batch(inputs, backend.inputs)
    batches = plan_batches(len(inputs[0]), per_batch)
    log.info("%d files, %d per batch, %d batches", len(inputs[0]), per_batch, len(batches))
    clash = first_clash(inputs[0], args.outfmt) if out_dir else None
    if clash:
        raise UserError(f"{clash[0]} and {clash[1]} would write the same output files")

    def read(batch):
        start = time.perf_counter()
        arrays = [read_batch([files[i] for i in batch.files], spec, per_batch)
                  for files, spec in zip(inputs, backend.inputs)]
        timings.read_ms += (time.perf_counter() - start) * 1000.0
        return arrays

    arrays = read(batches[0])
    warm_up(backend, arrays, args.warmup_count)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    filesinfo = {}
    for batch in progress(batches, desc="Inference"):
        arrays = arrays if batch.index == 0 else read(batch)
        outputs = run_batch(backend, arrays, args.loop, timings)
        if out_dir:
            start = time.perf_counter()
            filesinfo.update(save_outputs(outputs, batch, inputs, per_batch, out_dir, args.outfmt))
            timings.write_ms += (time.perf_counter() - start) * 1000.0
    log.info("file reading %.1f ms, output writing %.1f ms (not in the compute time)",
             timings.read_ms, timings.write_ms)
    return filesinfo


def run_pure(args, backend, out_dir, timings):
    """``--loop`` runs on generated data of the model's input shape; nothing but the summary is saved."""
    rng = np.random.default_rng()
    arrays = [pure_data(spec, args.pure_data_type, rng) for spec in backend.inputs]
    warm_up(backend, arrays, args.warmup_count)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    inputs = timings.time("h2d", backend.upload, *arrays)
    for _ in progress(range(args.loop), desc="Inference"):
        outputs = timings.time("compute", backend.run, *inputs)
    timings.time("d2h", backend.download, outputs)
    return {}


def refuse_existing_run(out_dir, summary_path):
    """Never mix two runs: an output folder with files in it, or an existing summary, is a UserError."""
    if summary_path.exists() or (out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))):
        raise UserError(f"{out_dir} already holds a run; choose another --output_dirname or remove it")


def run_places(args):
    """``(device, output folder, summary path)`` per device; ais_bench's ``device{d}_{i}`` for several."""
    if not args.output:
        return [(device, None, None) for device in args.device]
    dirname = args.output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S")
    if inside(args.output, dirname) is None:
        raise UserError(f"--output_dirname {dirname!r} must be a plain folder name")
    base = Path(args.output) / dirname
    if len(args.device) == 1:
        places = [(args.device[0], base, Path(args.output) / f"{dirname}_summary.json")]
    else:
        places = [(d, base / f"device{d}_{i}", base / f"device{d}_{i}_summary.json")
                  for i, d in enumerate(args.device)]
    for _, out_dir, summary_path in places:
        refuse_existing_run(out_dir, summary_path)
    return places


def bench(args, backend_cls, device, out_dir=None, summary_path=None):
    """One run on one device: load, warm up, time, save; prints the Performance Summary; returns the summary."""
    inputs = list_inputs(args.input) if args.input else None
    backend = backend_cls()
    options = {"compile": args.torch_compile, "cuda_graph": args.cuda_graph} if backend_cls.name == "torch" else {}
    backend.load(args.model, batchsize=args.batchsize, device=device, precision=args.precision,
                 threads=args.threads, size=args.size, **options)
    timings = Timings()
    try:
        if inputs:
            filesinfo = run_files(args, backend, inputs, out_dir, timings)
        else:
            filesinfo = run_pure(args, backend, out_dir, timings)
    finally:
        backend.close()
    summary = build_summary(filesinfo, vars(args), timings.compute, timings.h2d, timings.d2h, backend.batchsize,
                            os.getpid(), extra={"backend": backend.name, "precision": backend.precision,
                                                "machine": describe_machine(backend.device_name(device)),
                                                "file_read_ms": timings.read_ms,
                                                "file_write_ms": timings.write_ms})
    if summary_path:
        write_summary(summary_path, summary)
        log.info("outputs in %s, summary %s", out_dir, summary_path)
    for line in performance_lines(summary, backend.batchsize, args.display_all_summary):
        print(line, flush=True)
    return summary


def main(argv=None):
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    set_quiet(args.quiet)
    name = args.backend or backend_for_model(args.model)
    backend_cls = get_backend(name)
    if backend_cls.external:
        return backend_cls.run_external(ais_bench_argv(args, parser) + unknown)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.output_dirname and not args.output:
        raise UserError("--output_dirname needs --output")
    if len(args.device) > 1 and not backend_cls.has_gpu():
        raise UserError(f"--device {','.join(map(str, args.device))}: one run per device needs GPUs; "
                        f"the {name} backend runs on the CPU here, so give one device")
    if (args.torch_compile or args.cuda_graph) and name != "torch":
        raise UserError("--torch_compile and --cuda_graph are torch backend options (a .pth model)")
    for device, out_dir, summary_path in run_places(args):
        bench(args, backend_cls, device, out_dir, summary_path)
