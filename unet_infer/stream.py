"""Streaming mode: decode, infer and score in one pass, writing no image or output .bin files.

The guide's flow writes every preprocessed image (3.9 MB at 572 x 572) and every output
(1.3 MB) to disk: 20 GB and 6.7 GB for Carvana's 5,088 images. Here a pool of worker processes
decodes each image and its mask in order, a bounded number of images ahead of the model, and
the runner's own loop (``bench.loop``) runs the model on the batches while this process scores
each image. Decoding and scoring are the file flow's own functions (``data.load_image``,
``data.load_label``, ``postprocess.score_arrays``) and a short last batch is padded with copies
of its first image, as the runner pads, so the per-image IoU is the same.

  the streaming form of stages 1 and 4-6 for batch size 8:
    python3 -m unet_infer.stream --model UNet_bs8.onnx --data ./carvana --batchsize 8 \\
        --result work/result_bs8.txt --summary work/result/bs8_summary.json

Reads DATA/train/<stem>.jpg and DATA/train_masks/<stem>_mask.gif. Writes --result and the .json
beside it (as postprocess_unet_pth.py does); with --summary, the ais_bench summary (filesinfo
lists each image with no output files; the compute times are the model runs only; mode
``stream``, decode_wait_ms and wall_s) and (or with --masks) the predicted masks of the images the
report draws (the 4 worst and 4 best) as 0/255 PNGs, <masks>/<stem>.png (by default
result/bs8_masks beside result/bs8_summary.json), for its overlays. Prints the Performance Summary,
then the IoU line.

Resuming: each scored batch is recorded as it finishes in <result stem>.journal beside --result
(e.g. work/result_bs8.journal; see unet_infer/journal.py). The same command after a stop (kill -9,
Ctrl-C, a full disk) scores only the batches not recorded (their images are not even decoded) and
writes the same result files, byte for byte, and the same masks; the summary adds attempts and
resumed_images, and its compute times cover every batch, whichever attempt ran it. A record made
from another model, other data or other options (--batchsize, --size, --backend, --precision,
--device, --threads, the backend's options) is set aside as <name>.stale, never reused. A finished
run removes its record: the same command afterwards scores (and times) everything again.
"""

import bisect
import logging
import os
import time
from pathlib import Path

import numpy as np

from . import backends, cli
from .bench.loop import Timings, run_loop, warm_up, zeros_like_inputs
from .bench.flags import add_backend_flags, backend_options
from .cli import UserError
from .data import DECODE_ERRORS, load_image, load_label, pair_carvana
from .journal import Journal, beside, run_key
from .formats import DEFAULT_SIZE, natural_key
from .machine import describe_machine
from .metrics import logits_to_mask
from .parallel import Prefetcher, default_decoders, default_threads
from .postprocess import check_logits, score_arrays
from .progress import progress, set_quiet
from .results import (N_EXTREMES, check_writable, select_extremes, summary_line, write_mask_png,
                      write_results)
from .summary import build_summary, performance_lines, wall_s, write_summary

log = logging.getLogger(__name__)

WARMUP_RUNS = 1  # as the runner's default --warmup_count


def decode(task):
    """Worker: (image path, mask path, size) -> (image array, label mask, None) or (None, None, why)."""
    image_path, label_path, size = task
    try:
        image = load_image(image_path, size)
    except DECODE_ERRORS as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    return image, load_label(label_path, size), None


class Extremes:
    """The predicted masks of the images the report draws (``results.select_extremes``), while streaming.

    Kept: the n lowest images by (IoU, name) and the 2n highest by (-IoU, name), and only their
    masks. Whatever the final count, the report's worst (at most n of the lowest) and best (at
    most n of the highest that are not among the worst) lie among them.
    """

    def __init__(self, n=N_EXTREMES):
        self.n = n
        self.low, self.high = [], []  # sorted [(sort key, name, iou)], at most n and 2n
        self.kept = {}  # name -> bool mask

    def offer(self, name, iou, logits=None, mask=None):
        """Offer a scored image; its mask (``mask``, else from ``logits``) when it entered the kept
        extremes, else None. A replay (``mask`` only) of an image that enters without one: KeyError."""
        entered = False
        for kept, key, limit in ((self.low, (iou, natural_key(name)), self.n),
                                 (self.high, (-iou, natural_key(name)), 2 * self.n)):
            if len(kept) < limit or key < kept[-1][0]:
                bisect.insort(kept, (key, name, iou))
                del kept[limit:]
                entered = True
        if not entered:
            return None
        if mask is None and logits is None:
            raise KeyError(f"{name} entered the extremes and has no mask")
        self.kept[name] = mask = logits_to_mask(logits) if mask is None else mask
        live = {entry[1] for entry in self.low + self.high}
        for gone in [k for k in self.kept if k not in live]:
            del self.kept[gone]
        return mask

    def masks(self):
        """``{name: bool mask}`` of the report's worst and best images."""
        candidates = {name: {"name": name, "iou": iou} for _, name, iou in self.low + self.high}
        worst, best = select_extremes(list(candidates.values()), self.n)
        return {record["name"]: self.kept[record["name"]] for record in worst + best}


def write_masks(folder, masks, names):
    """Write each mask as ``folder/<name>.png`` (L, 0/255); drop this run's names' older PNGs."""
    folder = Path(folder)
    for name in names:
        stale = folder / f"{name}.png"
        if name not in masks and stale.is_file():
            stale.unlink()
    for name, mask in masks.items():
        write_mask_png(folder, name, mask)


def masks_folder(args):
    """--masks, else ``<summary stem without _summary>_masks`` beside the summary, else None."""
    if args.masks:
        return Path(args.masks)
    if not args.summary:
        return None
    summary = Path(args.summary)
    stem = summary.stem[:-len("_summary")] if summary.stem.endswith("_summary") else summary.stem
    return summary.with_name(f"{stem}_masks")


class Scorer:
    """The sink of a scoring flow: per-image IoU and Dice, the filesinfo entries, the extremes."""

    def __init__(self, batchsize, size, keep_extremes=True):
        self.batchsize, self.size = batchsize, size
        self.records, self.filesinfo = [], {}
        self.extremes = Extremes() if keep_extremes else None

    def __call__(self, items, outputs):
        """``items``: ``[(image path, label mask), ...]`` of the batch's real slots, in slot order.
        Returns the batch's records and ``{name: mask}`` of its images that entered the extremes."""
        logits = outputs[0]
        check_logits(logits, self.batchsize, self.size)
        start, entered = len(self.records), {}
        for slot, (path, label) in enumerate(items):
            name = Path(path).stem
            iou, dice = score_arrays(logits[slot], label)
            self.records.append({"name": name, "iou": iou, "dice": dice})
            self.filesinfo[len(self.filesinfo)] = {"infiles": [str(path)], "outfiles": []}
            if self.extremes is not None:
                mask = self.extremes.offer(name, iou, logits[slot])
                if mask is not None:
                    entered[name] = mask
        return self.records[start:], entered

    def replay(self, records, paths, masks):
        """Take a recorded batch as if scored now: its records, their image paths (slot order) and
        the masks that entered the extremes with it (KeyError when one that enters now has none)."""
        for record, path in zip(records, paths):
            self.records.append(dict(record))
            self.filesinfo[len(self.filesinfo)] = {"infiles": [str(path)], "outfiles": []}
            if self.extremes is not None:
                self.extremes.offer(record["name"], record["iou"], mask=masks.get(record["name"]))


def pack_batch(spec, images):
    """One batch array: the images, then copies of the first (padding, as the runner pads)."""
    array = np.empty(spec.shape, spec.dtype)  # a new array each batch: a backend may keep it
    for slot, image in enumerate(images):
        array[slot] = image
    array[len(images):] = array[0]
    return array


def decoded_feeds(decoded, tasks, spec, timings, bad):
    """``([array], [(path, label), ...])`` per batch from the decoder; unreadable images are logged,
    listed in ``bad`` and left out (the next images fill their slots)."""
    for arrays, (items, _) in decoded_units(decoded, tasks, spec, timings, bad):
        yield arrays, items


def decoded_units(decoded, tasks, spec, timings, bad, position=0):
    """:func:`decoded_feeds` of ``tasks[position:]`` (what ``decoded`` decodes) with the batch's unit
    as the tag: ``(items, (first, end, [unreadable positions]))``, the task positions first..end-1
    it took (so a unit is well defined whatever is unreadable)."""
    batchsize = spec.shape[0]
    while position < len(tasks):
        items, images, first, skipped = [], [], position, []
        while len(items) < batchsize and position < len(tasks):
            start = time.perf_counter()
            image, label, why = next(decoded)
            timings.add("wait_ms", start)
            path = tasks[position][0]
            position += 1
            if why is not None:
                log.warning("%s: cannot read the image (%s)", path, why)
                bad.append(path)
                skipped.append(position - 1)
                continue
            items.append((path, label))
            images.append(image)
        if items:
            yield [pack_batch(spec, images)], (items, (first, position, skipped))


def replay(units, tasks, scorer):
    """Replay a stream's record into ``scorer``: its units must be batches 0, 1, ... of these tasks
    (else ValueError). Returns the first task left, the unreadable paths and each batch's times."""
    position, bad, times = 0, [], []
    try:
        for number in range(len(units)):
            unit = units.get(number)
            if unit is None:
                raise ValueError(f"its units are not the batches 0..{len(units) - 1} of a stream")
            (first, end), skipped, ms = unit.extra["span"], unit.extra["bad"], unit.extra["ms"]
            if first != position or not first < end <= len(tasks) or not set(skipped) <= set(range(first, end)):
                raise ValueError(f"unit {number} is not the run's next batch")
            paths = [tasks[p][0] for p in range(first, end) if p not in skipped]
            if [Path(p).stem for p in paths] != [r["name"] for r in unit.records]:
                raise ValueError(f"unit {number} holds other images than this run's")
            scorer.replay(unit.records, paths, unit.masks)
            bad += [tasks[p][0] for p in skipped]
            times.append([float(t) for t in ms[:3]])
            position = end
    except (KeyError, TypeError) as exc:
        raise ValueError(f"a unit that is not a stream's ({type(exc).__name__}: {exc})") from None
    return position, bad, times


def resume(journal, tasks, size):
    """``(scorer, first task left, unreadable paths, times of the recorded batches)`` from the run's
    record; a record that does not fit these tasks is set aside and the run starts afresh."""
    scorer = Scorer(None, size)  # its batch size: the backend's, once loaded
    try:
        position, bad, times = replay(journal.units, tasks, scorer)
    except ValueError as exc:
        log.warning("%s: %s; set aside as %s, starting afresh", journal.path, exc, journal.set_aside("damaged").name)
        return resume(journal, tasks, size)
    if position:
        log.info("%s: resuming: %d image(s) scored by %d earlier attempt(s); %d task(s) left",
                 journal.path, len(scorer.records), journal.attempts - 1, len(tasks) - position)
    return scorer, position, bad, times


def recorder(scorer, journal, timings, bar):
    """The run's sink: score a batch, then record it as the next unit (with its span and times)."""
    def sink(tag, outputs):
        items, (first, end, skipped) = tag
        records, masks = scorer(items, outputs)
        j = len(timings.d2h) - 1
        journal.append(len(journal.units), records, masks, span=[first, end], bad=skipped,
                       ms=[timings.compute[j], timings.h2d[j], timings.d2h[j]])
        bar.update(len(items))
    return sink


def stream(args):
    """The whole run; returns ``(result summary, ais_bench summary)``."""
    started = time.perf_counter()
    name = args.backend or backends.backend_for_model(args.model)
    cls = backends.in_process(name, "the streaming mode")
    backends.usable_backend(name)
    precision = cls.check_precision(args.precision) if args.precision else None
    options = backend_options(args, cls)
    check_writable(args.result, inputs=[args.data])
    tasks = [(str(image), str(label), args.size) for _, image, label in pair_carvana(args.data)]
    made_from = {"batchsize": args.batchsize, "size": args.size, "backend": name, "device": args.device[0],
                 "precision": cls.check_precision(args.precision), "threads": args.threads, **options}
    with Journal(beside(args.result), run_key(args.model, args.data, made_from)) as journal:
        scorer, position, bad, earlier = resume(journal, tasks, args.size)
        resumed, timings = len(scorer.records), Timings()
        backend = score(args, cls, precision, options, tasks, journal, scorer, position, timings, bad)
        if not scorer.records:
            raise UserError(f"none of the {len(tasks)} images could be read")
        result, summary = finish(args, backend, scorer, timings, started, earlier,
                                 {"attempts": journal.attempts, "resumed_images": resumed})
        journal.remove()  # complete: the same command afterwards runs afresh
    for line in performance_lines(summary):
        print(line, flush=True)
    print(summary_line(result), flush=True)
    if bad:
        raise UserError(f"{len(bad)} unreadable image(s), left out of the scores: {', '.join(bad)}")
    return result, summary


def score(args, cls, precision, options, tasks, journal, scorer, position, timings, bad):
    """Decode, infer, score and record ``tasks[position:]``; returns the (closed) backend."""
    workers = args.workers or default_decoders()
    log.info("%d images, %d decoding process(es)", len(tasks) - position, workers)
    with Prefetcher(decode, tasks[position:], workers, ahead=(args.batchsize or 1) + 2 * workers) as decoded:
        backend = cls()
        backend.load(args.model, batchsize=args.batchsize, device=args.device[0], precision=precision,
                     threads=args.threads, size=args.size, **options)
        try:
            spec = backend.inputs[0]
            if len(backend.inputs) != 1 or spec.shape[1:] != (3, args.size, args.size):
                raise UserError(f"{args.model}: the model takes {[s.shape for s in backend.inputs]}; the "
                                f"stream feeds one N x 3 x {args.size} x {args.size} input (see --size)")
            decoded.ahead = backend.batchsize * (2 if backend.async_upload else 1) + 2 * workers
            warm_up(backend, zeros_like_inputs(backend), WARMUP_RUNS)  # overlaps the first decoding
            scorer.batchsize = backend.batchsize
            with progress(total=len(tasks), desc="stream", unit="img") as bar:
                bar.update(len(scorer.records))
                run_loop(backend, decoded_units(decoded, tasks, spec, timings, bad, position),
                         recorder(scorer, journal, timings, bar), timings)
        finally:
            backend.close()
    return backend


def finish(args, backend, scorer, timings, started, earlier, resumed):
    """Write the result files, the summary (``earlier``: the recorded batches' times) and the masks."""
    result = write_results(scorer.records, args.result,
                           provenance={"model": str(Path(args.model).resolve()), "weights": backend.weights,
                                       "backend": backend.name,
                                       "precision": backend.precision, "data": str(Path(args.data).resolve()),
                                       "size": args.size})
    times = [[t[i] for t in earlier] for i in range(3)]
    summary = build_summary(scorer.filesinfo, vars(args), times[0] + timings.compute, times[1] + timings.h2d,
                            times[2] + timings.d2h, backend.batchsize, os.getpid(),
                            extra={"backend": backend.name, "precision": backend.precision,
                                   "machine": describe_machine(backend.device_name(args.device[0])),
                                   "mode": "stream", "model": str(Path(args.model).resolve()),
                                   "weights": backend.weights,
                                   "decode_wait_ms": timings.wait_ms, "wall_s": time.perf_counter() - started,
                                   **resumed})
    log.info("waited %.1f ms for decoded images; %.1f s in all", timings.wait_ms, wall_s(summary))
    if args.summary:
        write_summary(args.summary, summary)
    folder = masks_folder(args)
    if folder:
        write_masks(folder, scorer.extremes.masks(), [r["name"] for r in scorer.records])
    return result, summary


def add_machine_flags(parser):
    """--device, --threads and --workers of a flow that decodes beside one model (stream, predict)."""
    add = parser.add_argument
    add("--device", "-d", type=cli.device_list, default="0", help="device id (CUDA for torch)")
    add("--threads", type=cli.int_at_least(1), default=default_threads(), help="CPU threads for the model")
    add("--workers", type=cli.int_at_least(1),
        help=f"decoding processes (without it: CPUs - 1, here {default_decoders()})")


def add_result_flags(parser):
    """--result, --summary and --masks of a flow that scores as it goes (stream, cluster)."""
    add = parser.add_argument
    add("--result", required=True, help="per-image result text file; the .json of the same stem goes beside it")
    add("--summary", help="ais_bench-schema summary JSON to write (e.g. result/bs8_summary.json)")
    add("--masks", help="folder for the worst and best images' predicted masks (without it: "
                        "<summary name without _summary>_masks beside --summary; none without either)")


def build_parser():
    parser = cli.parser("python3 -m unet_infer.stream", __doc__)
    add = parser.add_argument
    add("--model", "-m", required=True, help="model file: .onnx, .xml (OpenVINO IR) or .pth/.pt (a UNet state_dict)")
    add("--data", required=True, help="Carvana-format folder: train/<stem>.jpg and train_masks/<stem>_mask.gif")
    add("--batchsize", type=cli.int_at_least(1), help="batch size of a dynamic-batch model (without it: 1); "
                                                       "a fixed-batch model uses its own")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="model input height = width")
    add_backend_flags(parser)
    add_machine_flags(parser)
    add_result_flags(parser)
    cli.add_quiet(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    if len(args.device) > 1:
        raise UserError("--device: the stream runs on one device; for several, use cluster=ray in the driver")
    stream(args)


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
