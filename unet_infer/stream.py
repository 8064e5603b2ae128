"""Streaming mode: decode, infer and score in one pass, writing no .bin files.

The guide's flow writes every preprocessed image (3.9 MB at 572 x 572) and every output
(1.3 MB) to disk: 20 GB and 6.7 GB for Carvana's 5,088 images. Here a pool of worker processes
decodes each image and its mask in order, a bounded number of images ahead of the model, while
this process runs the model on batches and scores each image. The functions are the file-based
flow's own (``preprocess.load_image``, ``postprocess.load_label``, ``postprocess.score_arrays``)
and the batches are the runner's (a short last batch padded with copies of its first image,
padded slots ignored), so the per-image IoU is the same.

  the streaming form of stages 1 and 4-6 for batch size 8:
    python3 -m unet_infer.stream --model UNet_bs8.onnx --data ./carvana --batchsize 8 \\
        --result work/result_bs8.txt --summary work/result/bs8_summary.json

Reads DATA/train/<stem>.jpg and DATA/train_masks/<stem>_mask.gif. Writes --result and the .json
beside it (as postprocess_unet_pth.py does); with --summary, the ais_bench summary (filesinfo
lists each image with no output files; the compute times are the model runs only; extra keys
mode, decode_wait_ms and wall_s) and (or with --masks) the predicted masks of the images the report draws (the 4
worst and 4 best) as 0/255 PNGs, <masks>/<stem>.png (by default result/bs8_masks beside
result/bs8_summary.json), for its overlays. Prints the Performance Summary, then the IoU line.
"""

import argparse
import bisect
import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

from .backends import backend_for_model, get_backend
from .bench.runner import Timings, default_threads, warm_up
from .errors import HelpFormatter, UserError, int_at_least, run_cli
from .formats import DEFAULT_SIZE, IMAGE_SUFFIXES, atomic_path, natural_key
from .machine import describe_machine
from .metrics import logits_to_mask
from .postprocess import (CLASSES, load_label, mask_path, result_json_path, score_arrays, summary_line,
                          write_results)
from .preprocess import DECODE_ERRORS, find_images, load_image
from .progress import progress, set_quiet
from .report import N_EXTREMES, select_extremes
from .summary import build_summary, performance_lines, write_summary

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
WARMUP_RUNS = 1  # as the runner's default --warmup_count


def default_workers():
    """Decoding processes: one per CPU but the one that runs the model, at least one."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus - 1)


def _init_decoder():
    """Leave Ctrl-C to the parent. SIGTERM keeps its default: a decoder writes nothing, so it can
    die anywhere (a Python handler could miss a SIGTERM that comes while it waits for a task)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def decode(task):
    """Worker: (image path, mask path, size) -> (image array, label mask, None) or (None, None, why)."""
    image_path, label_path, size = task
    try:
        image = load_image(image_path, size)
    except DECODE_ERRORS as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    return image, load_label(label_path, size), None


class Prefetcher:
    """``func(task)`` for every task, in order, from a process pool, at most ``ahead`` tasks queued.

    Decoding starts at construction (so it overlaps the model's loading); ``ahead`` may be
    raised later. Results are yielded in task order, so memory holds ``ahead`` results at most.
    Leaving the ``with`` block normally lets the workers finish; an exception stops them.
    """

    def __init__(self, func, tasks, workers, ahead):
        self.func, self.tasks, self.ahead = func, iter(tasks), ahead
        self.queue = deque()
        self.pool = multiprocessing.Pool(workers, initializer=_init_decoder)
        self._fill()

    def _fill(self):
        while len(self.queue) < self.ahead:
            task = next(self.tasks, None)
            if task is None:
                return
            self.queue.append(self.pool.apply_async(self.func, (task,)))

    def __iter__(self):
        return self

    def __next__(self):
        if not self.queue:
            raise StopIteration
        pending = self.queue.popleft()
        self._fill()
        return pending.get()

    def close(self, stop=False):
        """Wait for the workers to exit (``stop``: kill them first, dropping queued tasks)."""
        if stop or self.queue:
            self.pool.terminate()
        else:
            self.pool.close()
        self.pool.join()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(stop=exc_type is not None)


class Extremes:
    """The predicted masks of the images the report draws (``report.select_extremes``), while streaming.

    Kept: the n lowest images by (IoU, name) and the 2n highest by (-IoU, name), and only their
    masks. Whatever the final count, the report's worst (at most n of the lowest) and best (at
    most n of the highest that are not among the worst) lie among them.
    """

    def __init__(self, n=N_EXTREMES):
        self.n = n
        self.low, self.high = [], []  # sorted [(sort key, name, iou)], at most n and 2n
        self.kept = {}  # name -> bool mask

    def offer(self, name, iou, logits):
        entered = False
        for kept, key, limit in ((self.low, (iou, natural_key(name)), self.n),
                                 (self.high, (-iou, natural_key(name)), 2 * self.n)):
            if len(kept) < limit or key < kept[-1][0]:
                bisect.insort(kept, (key, name, iou))
                del kept[limit:]
                entered = True
        if entered:
            self.kept[name] = logits_to_mask(logits)
            live = {entry[1] for entry in self.low + self.high}
            for gone in [k for k in self.kept if k not in live]:
                del self.kept[gone]

    def masks(self):
        """``{name: bool mask}`` of the report's worst and best images."""
        candidates = {name: {"name": name, "iou": iou} for _, name, iou in self.low + self.high}
        worst, best = select_extremes(list(candidates.values()), self.n)
        return {record["name"]: self.kept[record["name"]] for record in worst + best}


def write_masks(folder, masks, names):
    """Write each mask as ``folder/<name>.png`` (L, 0/255); drop this run's names' older PNGs."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            stale = folder / f"{name}.png"
            if name not in masks and stale.is_file():
                stale.unlink()
        for name, mask in masks.items():
            with atomic_path(folder / f"{name}.png") as tmp:
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, format="PNG")
    except OSError as exc:
        raise UserError(f"{folder}: cannot write the masks ({exc})") from None


def masks_folder(args):
    """--masks, else ``<summary stem without _summary>_masks`` beside the summary, else None."""
    if args.masks:
        return Path(args.masks)
    if not args.summary:
        return None
    summary = Path(args.summary)
    stem = summary.stem[:-len("_summary")] if summary.stem.endswith("_summary") else summary.stem
    return summary.with_name(f"{stem}_masks")


def plan_tasks(data, size):
    """``[(image path, mask path, size), ...]`` for every image of ``data/train``, natural order, checked."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: data folder not found (it must hold train/ and train_masks/)")
    label_dir = data / "train_masks"
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: mask folder not found")
    images = find_images(data / "train")
    if not images:
        raise UserError(f"{data / 'train'}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    stems, tasks, missing = {}, [], []
    for path in images:
        if path.stem in stems:
            raise UserError(f"{stems[path.stem]} and {path} have the same name {path.stem}")
        stems[path.stem] = path
        label = mask_path(label_dir, path.stem)
        if not label.is_file():
            missing.append((label, path))
        tasks.append((str(path), str(label), size))
    if missing:
        more = f"; {len(missing) - 1} more image(s) have no mask" if len(missing) > 1 else ""
        raise UserError(f"{missing[0][0]}: mask not found (the label of {missing[0][1]}){more}")
    return tasks


def check_options(args, name):
    """The backend and precision together; returns the precision to load the model in."""
    if name not in BACKENDS:
        raise UserError(f"the streaming mode runs the onnxruntime or torch backend, not {name}")
    if name == "onnxruntime":
        if args.torch_compile or args.cuda_graph:
            raise UserError("--torch_compile and --cuda_graph are torch backend options (a .pth model)")
        if args.precision in ("fp16", "bf16"):
            raise UserError(f"--precision {args.precision}: the onnxruntime backend runs the model in its "
                            f"own precision; use the torch backend (a .pth model) for fp16/bf16")
        return "fp32"  # int8 names a quantised ONNX model, which runs as it is
    if args.precision == "int8":
        raise UserError("--precision int8 means a quantised ONNX model (onnxruntime backend); "
                        "the torch backend runs fp32, fp16 or bf16")
    return args.precision


class Streamer:
    """One streaming run: decode ahead, run the model on each batch, score, keep the extremes."""

    def __init__(self, backend, decoded, tasks, size):
        self.backend, self.decoded, self.tasks, self.size = backend, decoded, tasks, size
        self.spec = backend.inputs[0]
        self.timings = Timings()
        self.wait_ms = 0.0
        self.records, self.filesinfo, self.bad = [], {}, []
        self.extremes = Extremes()
        self.position = 0  # tasks taken from the decoder so far

    def next_batch(self):
        """The next batch of images that decode (unreadable ones are logged and left out), or None."""
        items = []
        while len(items) < self.backend.batchsize and self.position < len(self.tasks):
            start = time.perf_counter()
            image, label, why = next(self.decoded)
            self.wait_ms += (time.perf_counter() - start) * 1000.0
            path = self.tasks[self.position][0]
            self.position += 1
            if why is not None:
                log.warning("%s: cannot read the image (%s)", path, why)
                self.bad.append(path)
                continue
            items.append((path, label, image))
        if not items:
            return None
        array = np.empty(self.spec.shape, self.spec.dtype)  # a new array each batch: a backend may keep it
        for slot, (_, _, image) in enumerate(items):
            array[slot] = image
        array[len(items):] = array[0]  # padding: copies of the batch's first image, as the runner does
        return [(path, label) for path, label, _ in items], array

    def upload(self, batch, wait):
        if batch is None:
            return None
        if wait:
            return self.timings.time("h2d", self.backend.upload, batch[1])
        return self.timings.time("h2d", lambda array: self.backend.upload(array, wait=False), batch[1])

    def score(self, items, logits):
        expected = (self.backend.batchsize, self.size, self.size)
        if (logits.ndim != 4 or logits.shape[1] not in CLASSES
                or (logits.shape[0], *logits.shape[2:]) != expected):
            raise UserError(f"the model's output has shape {logits.shape}, expected "
                            f"{self.backend.batchsize} x 1 (or 2) x {self.size} x {self.size}")
        for slot, (path, label) in enumerate(items):
            name = Path(path).stem
            iou, dice = score_arrays(logits[slot], label)
            self.records.append({"name": name, "iou": iou, "dice": dice})
            self.filesinfo[len(self.filesinfo)] = {"infiles": [path], "outfiles": []}
            self.extremes.offer(name, iou, logits[slot])

    def run(self, total):
        """Every batch; with an asynchronous upload, batch k+1's copy is queued before batch k runs."""
        backend = self.backend
        overlap = bool(getattr(backend, "async_upload", False))
        # on zeros, so that the warm-up overlaps the decoding of the first batch
        warm_up(backend, [np.zeros(self.spec.shape, self.spec.dtype)], WARMUP_RUNS)
        current = self.next_batch()
        if current is None:
            return
        staged = self.upload(current, wait=not overlap)
        with progress(total=total, desc="stream", unit="img") as bar:
            while current is not None:
                if overlap:
                    following = self.next_batch()
                    following_staged = self.upload(following, wait=False)
                outputs = self.timings.time("compute", backend.run, *staged)
                (logits, *_) = self.timings.time("d2h", backend.download, outputs)
                self.score(current[0], logits)
                bar.update(len(current[0]))
                if not overlap:
                    following = self.next_batch()
                    following_staged = self.upload(following, wait=True)
                current, staged = following, following_staged


def stream(args):
    """The whole run; returns ``(result summary, ais_bench summary)``."""
    started = time.perf_counter()
    name = args.backend or backend_for_model(args.model)
    precision = check_options(args, name)
    result_json_path(args.result)  # a bad --result fails before the run, not after
    tasks = plan_tasks(args.data, args.size)
    backend_cls = get_backend(name)
    workers = args.workers or default_workers()
    options = {"compile": args.torch_compile, "cuda_graph": args.cuda_graph} if name == "torch" else {}
    log.info("%d images, %d decoding process(es)", len(tasks), workers)
    with Prefetcher(decode, tasks, workers, ahead=(args.batchsize or 1) + 2 * workers) as decoded:
        backend = backend_cls()
        backend.load(args.model, batchsize=args.batchsize, device=args.device, precision=precision,
                     threads=args.threads, size=args.size, **options)
        try:
            spec = backend.inputs[0]
            if len(backend.inputs) != 1 or spec.shape[1:] != (3, args.size, args.size):
                raise UserError(f"{args.model}: the model takes {[s.shape for s in backend.inputs]}; the "
                                f"stream feeds one N x 3 x {args.size} x {args.size} input (see --size)")
            overlap = bool(getattr(backend, "async_upload", False))
            decoded.ahead = backend.batchsize * (2 if overlap else 1) + 2 * workers
            streamer = Streamer(backend, decoded, tasks, args.size)
            streamer.run(len(tasks))
        finally:
            backend.close()
    if args.precision == "int8" and backend.precision != "int8":
        log.warning("--precision int8, but %s has no quantised operators: it ran in %s",
                    args.model, backend.precision)
    if not streamer.records:
        raise UserError(f"none of the {len(tasks)} images could be read")
    streamer.records.sort(key=lambda record: natural_key(record["name"]))
    result = write_results(streamer.records, args.result)
    timings = streamer.timings
    summary = build_summary(streamer.filesinfo, vars(args), timings.compute, timings.h2d, timings.d2h,
                            backend.batchsize, os.getpid(),
                            extra={"backend": backend.name, "precision": backend.precision,
                                   "machine": describe_machine(backend.device_name(args.device)),
                                   "mode": "stream", "decode_wait_ms": streamer.wait_ms,
                                   "wall_s": time.perf_counter() - started})
    log.info("waited %.1f ms for decoded images; %.1f s in all", streamer.wait_ms, summary["wall_s"])
    if args.summary:
        try:
            Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
            write_summary(args.summary, summary)
        except OSError as exc:
            raise UserError(f"{args.summary}: cannot write the summary ({exc})") from None
    folder = masks_folder(args)
    if folder:
        write_masks(folder, streamer.extremes.masks(), [r["name"] for r in streamer.records])
    for line in performance_lines(summary, backend.batchsize):
        print(line, flush=True)
    print(summary_line(result), flush=True)
    if streamer.bad:
        raise UserError(f"{len(streamer.bad)} unreadable image(s), left out of the scores: "
                        f"{', '.join(streamer.bad)}")
    return result, summary


def build_parser():
    parser = argparse.ArgumentParser(prog="python3 -m unet_infer.stream", description=__doc__,
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    add = parser.add_argument
    add("--model", "-m", required=True, help="model file: .onnx or .pth/.pt (a UNet state_dict)")
    add("--data", required=True, help="Carvana-format folder: train/<stem>.jpg and train_masks/<stem>_mask.gif")
    add("--batchsize", type=int_at_least(1), help="batch size of a dynamic-batch model (without it: 1); "
                                                   "a fixed-batch model uses its own")
    add("--size", type=int_at_least(1), default=DEFAULT_SIZE, help="model input height = width")
    add("--backend", choices=BACKENDS, help="without it: from the model's suffix")
    add("--precision", default="fp32", choices=PRECISIONS,
        help="torch backend: compute precision; int8: the ONNX model is quantised (it runs as it is)")
    add("--device", type=int_at_least(0), default=0, help="CUDA device id (torch backend, or onnxruntime-gpu)")
    add("--threads", type=int_at_least(1), default=default_threads(), help="CPU threads for the model")
    add("--workers", type=int_at_least(1), help=f"decoding processes (without it: CPUs - 1, here "
                                                 f"{default_workers()})")
    add("--torch_compile", "--torch-compile", action="store_true",
        help="torch backend: torch.compile the model (compiled before the timed runs)")
    add("--cuda_graph", "--cuda-graph", action="store_true",
        help="torch backend on CUDA: replay the model as a CUDA graph")
    add("--result", required=True, help="per-image result text file; the .json of the same stem goes beside it")
    add("--summary", help="ais_bench-schema summary JSON to write (e.g. result/bs8_summary.json)")
    add("--masks", help="folder for the worst and best images' predicted masks (without it: "
                        "<summary name without _summary>_masks beside --summary; none without either)")
    add("--quiet", action="store_true", help="no progress display")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    stream(args)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
