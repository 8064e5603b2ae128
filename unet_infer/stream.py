"""Streaming mode: decode, infer and score in one pass, writing no image or output .bin files (the
guide's flow writes 20 GB and 6.7 GB of them for Carvana's 5,088 images). Worker processes decode
each image and its mask a bounded number ahead of the model; decoding, padding and scoring are the
file flow's own, so the per-image IoU is the same.

  the streaming form of stages 1 and 4-6 for batch size 8:
    python3 -m unet_infer.stream --model UNet_bs8.onnx --data ./carvana --batchsize 8 \\
        --result work/result_bs8.txt --summary work/result/bs8_summary.json

Reads DATA/train/<stem>.jpg and DATA/train_masks/<stem>_mask.gif. Writes --result and the .json
beside it (as postprocess_unet_pth.py does); with --summary, the ais_bench summary (mode stream,
no output files, decode_wait_ms and wall_s) and (or with --masks) the report's 4 worst and 4 best
images' predicted masks as 0/255 PNGs, <masks>/<stem>.png (by default result/bs8_masks beside
result/bs8_summary.json). Prints the Performance Summary, then the IoU line.

Resuming: each scored batch is recorded as it finishes in <result stem>.journal beside --result.
The same command after a stop (kill -9, Ctrl-C, a full disk) scores only the batches not recorded
(their images are not even decoded) and writes the same result files, byte for byte, and the same
masks; the summary adds attempts and resumed_images. A record made from another model, other data
or other options (--batchsize, --size, --backend, --precision, --device, --threads, the backend's
options) is set aside as <name>.stale, never reused; a finished run removes its record.
"""

import logging
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from . import cli, session
from .data import IMAGE_DIR, MASK_DIR, decode, decoded_units, mask_path, pair_carvana
from .journal import Journal, Unit, beside, run_key
from .loop import Timings, run_loop
from .parallel import Prefetcher, default_decoders
from .progress import progress
from .results import check_writable, iou_line
from .scoring import Scorer, add_result_flags, finish, resume
from .summary import build_summary, performance_lines, wall_s

log = logging.getLogger(__name__)


def survey(data, model, made_from):
    """The run's image file names (natural order, ``pair_carvana``'s) and its record's key."""
    return np.array([image.name for _, image, _ in pair_carvana(data)]), run_key(model, data, made_from)


class Images:
    """The run's images as one array of file names (a list of paths would cost about 300 bytes an
    image, again in each decoder forked from this process); ``images[i]``: the decoder's task."""

    def __init__(self, data, names, size):
        self.names, self.size = names, size
        self.folder, self.masks = str(Path(data) / IMAGE_DIR), Path(data) / MASK_DIR

    def __len__(self):
        return len(self.names)

    def path(self, i):
        return os.path.join(self.folder, self.names[i])

    def __getitem__(self, i):
        path = self.path(i)
        return path, str(mask_path(self.masks, Path(path).stem)), self.size


def in_order(tally, unit):
    """The stream's units are its batches 0, 1, ..., each from where the one before ended."""
    if unit.id != tally.units or unit.extra["span"][0] != tally.end:
        raise ValueError(f"unit {unit.id} is not the stream's next batch")


def stream(args):
    """The whole run; returns ``(result summary, ais_bench summary)``."""
    started = time.perf_counter()
    choice = session.choose(args, "the streaming mode")
    check_writable(args.result, inputs=[args.data])
    made_from = {"batchsize": args.batchsize, "size": args.size, "backend": choice.name, "device": args.device[0],
                 "precision": choice.runs_in, "threads": args.threads, **choice.options}
    with multiprocessing.Pool(1) as pool:  # listing many files leaves memory that this process would keep
        names, key = pool.apply(survey, (args.data, args.model, made_from))  # and each decoder count again
    tasks = Images(args.data, names, args.size)
    with Journal(beside(args.result), key) as journal:
        tally = resume(journal, len(tasks), tasks.path, in_order)
        resumed, timings = tally.scored, Timings()
        opened = score(args, choice, tasks, journal, tally, timings)

        keys = opened.summary_keys("stream")

        def summarize(filesinfo):  # the times of every batch, whichever attempt ran it
            summary = build_summary(filesinfo, vars(args), *tally.times(""), opened.batchsize, os.getpid(),
                                    extra={**keys, "decode_wait_ms": timings.wait_ms,
                                           "wall_s": time.perf_counter() - started,
                                           "attempts": journal.attempts, "resumed_images": resumed})
            log.info("waited %.1f ms for decoded images; %.1f s in all", timings.wait_ms, wall_s(summary))
            return summary

        result, summary = finish(args, tally, keys, summarize)
        journal.remove()  # complete: the same command afterwards runs afresh
    for line in performance_lines(summary):
        print(line, flush=True)
    print(iou_line(result), flush=True)
    tally.check_readable()
    return result, summary


def score(args, choice, tasks, journal, tally, timings):
    """Decode, infer, score and record the tasks from ``tally.end`` on; returns the (closed) opened model."""
    workers, position = args.workers or default_decoders(), tally.end
    log.info("%d images, %d decoding process(es)", len(tasks) - position, workers)

    def sink(tag, outputs):
        items, (first, end, skipped) = tag
        records, masks = scorer(items, outputs)
        j = len(timings.d2h) - 1
        tally.record(journal, Unit(tally.units, records, masks, {
            "span": [first, end], "bad": [[Path(tasks.path(p)).stem, ""] for p in skipped],
            "ms": [timings.compute[j], timings.h2d[j], timings.d2h[j]]}))
        bar.update(len(items))

    with Prefetcher(decode, map(tasks.__getitem__, range(position, len(tasks))), workers,
                    ahead=session.prefetch_depth(args.batchsize, workers)) as decoded:
        with choice.open(batchsize=args.batchsize, device=args.device[0], threads=args.threads, size=args.size,
                         image_size=args.size, warmup=session.WARMUP_RUNS, flow="the stream") as opened:
            decoded.ahead = opened.prefetch_depth(workers)  # the warm-up overlapped the first decoding
            scorer = Scorer(opened.batchsize, args.size)
            with progress(total=len(tasks), desc="stream", unit="img") as bar:
                bar.update(tally.scored)
                run_loop(opened.backend, decoded_units(decoded, tasks, opened.backend.inputs[0], timings, [],
                                                       position), sink, timings)
    for position in range(tally.end, len(tasks)):  # unreadable, after the last batch: in no unit
        tally.unreadable(position)
    return opened


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
