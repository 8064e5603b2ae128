"""Streaming mode: decode, infer and score in one pass, writing no image or output .bin files.

The guide's flow writes every preprocessed image (3.9 MB at 572 x 572) and every output
(1.3 MB) to disk: 20 GB and 6.7 GB for Carvana's 5,088 images. Here a pool of worker processes
decodes each image and its mask in order, a bounded number of images ahead of the model, and
the runner's own inference loop runs the model on the batches while this process scores
each image. Decoding and scoring are the file flow's own (those of preprocess_unet_pth.py
and postprocess_unet_pth.py) and a short last batch is padded with copies
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
(e.g. work/result_bs8.journal). The same command after a stop (kill -9,
Ctrl-C, a full disk) scores only the batches not recorded (their images are not even decoded) and
writes the same result files, byte for byte, and the same masks; the summary adds attempts and
resumed_images, and its compute times cover every batch, whichever attempt ran it. A record made
from another model, other data or other options (--batchsize, --size, --backend, --precision,
--device, --threads, the backend's options) is set aside as <name>.stale, never reused. A finished
run removes its record: the same command afterwards scores (and times) everything again.
"""

import logging
import os
import time
from pathlib import Path

from . import cli, session
from .cli import UserError
from .data import pair_carvana
from .decoding import decode, decoded_units
from .journal import Journal, beside, run_key
from .loop import Timings, run_loop
from .parallel import Prefetcher, default_decoders
from .progress import progress
from .results import check_writable, iou_line, provenance_of, write_results
from .scoring import Scorer, add_result_flags, masks_folder, write_masks
from .summary import build_summary, performance_lines, wall_s, write_summary

log = logging.getLogger(__name__)

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
    choice = session.choose(args, "the streaming mode")
    check_writable(args.result, inputs=[args.data])
    tasks = [(str(image), str(label), args.size) for _, image, label in pair_carvana(args.data)]
    made_from = {"batchsize": args.batchsize, "size": args.size, "backend": choice.name, "device": args.device[0],
                 "precision": choice.runs_in, "threads": args.threads, **choice.options}
    with Journal(beside(args.result), run_key(args.model, args.data, made_from)) as journal:
        scorer, position, bad, earlier = resume(journal, tasks, args.size)
        resumed, timings = len(scorer.records), Timings()
        opened = score(args, choice, tasks, journal, scorer, position, timings, bad)
        if not scorer.records:
            raise UserError(f"none of the {len(tasks)} images could be read")
        result, summary = finish(args, opened, scorer, timings, started, earlier,
                                 {"attempts": journal.attempts, "resumed_images": resumed})
        journal.remove()  # complete: the same command afterwards runs afresh
    for line in performance_lines(summary):
        print(line, flush=True)
    print(iou_line(result), flush=True)
    if bad:
        raise UserError(f"{len(bad)} unreadable image(s), left out of the scores: {', '.join(bad)}")
    return result, summary


def score(args, choice, tasks, journal, scorer, position, timings, bad):
    """Decode, infer, score and record ``tasks[position:]``; returns the (closed) opened model."""
    workers = args.workers or default_decoders()
    log.info("%d images, %d decoding process(es)", len(tasks) - position, workers)
    with Prefetcher(decode, tasks[position:], workers, ahead=session.prefetch_depth(args.batchsize, workers)) as decoded:
        with choice.open(batchsize=args.batchsize, device=args.device[0], threads=args.threads, size=args.size,
                         image_size=args.size, warmup=session.WARMUP_RUNS, flow="the stream") as opened:
            decoded.ahead = opened.prefetch_depth(workers)  # the warm-up overlapped the first decoding
            scorer.batchsize = opened.batchsize
            with progress(total=len(tasks), desc="stream", unit="img") as bar:
                bar.update(len(scorer.records))
                run_loop(opened.backend, decoded_units(decoded, tasks, opened.backend.inputs[0], timings, bad,
                                                       position),
                         recorder(scorer, journal, timings, bar), timings)
    return opened


def finish(args, opened, scorer, timings, started, earlier, resumed):
    """Write the result files, the summary (``earlier``: the recorded batches' times) and the masks."""
    keys = opened.summary_keys("stream")
    result = write_results(scorer.records, args.result, provenance=provenance_of(keys, args.data, args.size))
    times = [[t[i] for t in earlier] for i in range(3)]
    summary = build_summary(scorer.filesinfo, vars(args), times[0] + timings.compute, times[1] + timings.h2d,
                            times[2] + timings.d2h, opened.batchsize, os.getpid(),
                            extra={**keys, "decode_wait_ms": timings.wait_ms, "wall_s": time.perf_counter() - started,
                                   **resumed})
    log.info("waited %.1f ms for decoded images; %.1f s in all", timings.wait_ms, wall_s(summary))
    if args.summary:
        write_summary(args.summary, summary)
    folder = masks_folder(args)
    if folder:
        write_masks(folder, scorer.extremes.masks(), [r["name"] for r in scorer.records])
    return result, summary


def build_parser():
    parser = cli.parser("python3 -m unet_infer.stream", __doc__)
    add = parser.add_argument
    add("--model", "-m", required=True, help=f"model file: {session.model_files()}")
    add("--data", required=True, help="Carvana-format folder: train/<stem>.jpg and train_masks/<stem>_mask.gif")
    add("--batchsize", type=cli.int_at_least(1), help="batch size of a dynamic-batch model (without it: 1); "
                                                       "a fixed-batch model uses its own")
    session.add_model_flags(parser)
    add_result_flags(parser)
    cli.add_quiet(parser)
    return parser


def main(argv=None):
    session.flow_main(build_parser, stream, argv,
                      one_device="the stream runs on one device; for several, use cluster=ray in the driver")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
