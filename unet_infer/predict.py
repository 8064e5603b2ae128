"""Segment photos: find the car and drop the studio background, the job Carvana ran its competition for.

  masks of every photo of a folder, with the bundled weights (and cut-outs):
    python3 -m unet_infer.predict --input photos/ --output masks/ --cutout
  a submission file in the competition's format (and the masks):
    python3 -m unet_infer.predict --input carvana/test --output pred --rle submission.csv
  the competition's metric (mean Dice at the original resolution) on labelled photos:
    python3 -m unet_infer.predict --input carvana/train --labels carvana/train_masks --output pred
  each photo also run mirrored, the logits averaged (twice the model's time):
    python3 -m unet_infer.predict --input photos/ --output masks/ --tta
  an ONNX model on onnxruntime, up to 8 photos per model run:
    python3 -m unet_infer.predict --model UNet_dynamic_sim.onnx --input photos/ --output out --batchsize 8

The checkpoint (--weights, else the bundled weights/unet_carvana_predict.pth, width 22, made for
this; weights/unet_carvana.pth, the main job's, is narrower and faster) runs on --backend, else on
what backend=auto takes here for --precision (the line `backend=auto: ...` says which and why),
exported to a temporary ONNX file first for a backend that runs ONNX models. --input: photo files
and folders (their .jpg, .jpeg, .png) of any size and mode, fed to the model in RGB at --size.

Writes into --output, atomically: <stem>_mask.png (mode L, 0 and 255, the photo's size: car where
the probability, resized bilinear, is above --threshold); with --cutout <stem>_cutout.png (RGBA,
alpha = mask); with --rle the submission CSV (img,rle_mask); with --labels (DIR/<stem>_mask.gif or
.png) dice.csv and the mean Dice on stdout. An unreadable photo is skipped; the others are written,
and the run ends with one error line naming it (exit status 2). The details: docs/predict.md.
"""

import csv
import dataclasses
import io
import logging
import math
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from . import backends, cli, session
from .cli import UserError, os_error
from .data import (DECODE_ERRORS, decoded_units, find_files, image_to_array, load_label, mask_not_found, mask_path,
                   unique_stems)
from .formats import IMAGE_SUFFIXES, atomic_path, atomic_write_text
from .loop import Timings, run_loop
from .metrics import car_log_odds, iou_dice
from .parallel import Prefetcher, default_decoders
from .postprocess import check_logits
from .progress import progress
from .weights import PREDICT_WEIGHTS

log = logging.getLogger(__name__)

DEFAULT_BATCH = 4
DEFAULT_THRESHOLD = 0.5
CUTOUT_LEVEL = 3  # zlib level of the RGBA cut-outs: at 1918 x 1280, 2.5x faster than 6 for 7 % more bytes
MASK_NAME, CUTOUT_NAME, DICE_NAME = "{}_mask.png", "{}_cutout.png", "dice.csv"

# ---- the maths: pure functions ----


def probabilities(logits):
    """The car probability map, float32 in [0, 1] (sigmoid without overflow; NaN -> 0)."""
    prob = 0.5 * (1.0 + np.tanh(0.5 * car_log_odds(logits)))
    return np.nan_to_num(prob, nan=0.0).astype(np.float32)


def mask_at(logits, size, threshold=DEFAULT_THRESHOLD):
    """The car mask (bool, H x W) of one image's logits at the photo's ``size`` = (W, H): resized
    probabilities > ``threshold`` (at the threshold: background); at the model's size, log-odds > ln(t/(1-t))."""
    odds = car_log_odds(logits)
    if tuple(size) == odds.shape[::-1]:
        return odds > math.log(threshold / (1.0 - threshold))  # sigmoid(x) > t exactly when x > ln(t/(1-t))
    resized = Image.fromarray(probabilities(logits)).resize(tuple(size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64) > threshold


def cutout(pixels, mask):
    """RGBA uint8 H x W x 4: the photo's RGB pixels, alpha 255 on the car and 0 elsewhere."""
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    return np.dstack([np.asarray(pixels, dtype=np.uint8), alpha])


def rle_encode(mask):
    """Carvana's RLE of a mask (nonzero is car): ``start length`` for every run of car pixels of the
    mask flattened row by row, starts 1-based, space-separated; "" for an empty mask."""
    flat = np.asarray(mask).astype(bool, copy=False).reshape(-1)
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-based: run starts, then one past each run
    edges[1::2] -= edges[0::2]  # ends -> lengths
    return " ".join(map(str, edges.tolist()))


def submission_text(rows):
    """The --rle CSV: ``img,rle_mask``, then a row per (file name with its extension, RLE) pair."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("img", "rle_mask"))
    writer.writerows(rows)
    return buf.getvalue()


# ---- files ----


def gather_inputs(inputs):
    """The photos ``--input`` names: files as given, folders' images in natural order; no path twice,
    no stem twice (their masks would overwrite each other)."""
    photos = {}
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise UserError(f"{path}: no such file or folder")
        found = find_files(path, IMAGE_SUFFIXES, "image") if path.is_dir() else [path]
        for photo in found:
            photos.setdefault(photo.resolve(), photo)
    if not photos:
        raise UserError(f"no photos (.jpg, .jpeg, .png) found in {', '.join(map(str, inputs))}")
    unique_stems(list(photos.values()))
    return list(photos.values())


def check_outputs(args, photos):
    """Before any work: --output is no file and no input folder, no output file is an input."""
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: is a file; --output takes a folder")
    folders = {Path(item).resolve() for item in args.input if Path(item).is_dir()}
    if output.resolve() in folders:
        raise UserError(f"{output}: is an input folder; the masks would mix with the photos (choose "
                        f"another --output, e.g. {output / 'masks'})")
    inputs = {photo.resolve(): photo for photo in photos}
    names = [MASK_NAME] + ([CUTOUT_NAME] if args.cutout else [])
    planned = [output / name.format(photo.stem) for photo in photos for name in names]
    planned += ([Path(args.rle)] if args.rle else []) + ([output / DICE_NAME] if args.labels else [])
    for path in planned:
        if path.resolve() in inputs:
            raise UserError(f"{path}: would overwrite the input {inputs[path.resolve()]}; write elsewhere")
    if args.rle and Path(args.rle).is_dir():
        raise UserError(f"{args.rle}: is a folder; --rle takes a CSV file name")


def find_labels(folder, photos):
    """``{photo: DIR/<stem>_mask.gif or .png}``; a missing folder or mask is a UserError before any work."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: label folder not found")
    labels = {photo: mask_path(folder, photo.stem) for photo in photos}
    missing = [(label, photo) for photo, label in labels.items() if not label.is_file()]
    if missing:
        raise UserError(f"{mask_not_found(missing, len(photos))}; leave out --labels to predict without scoring")
    return labels


def save_png(path, array, level=6):
    """A uint8 array (H x W: mode L; H x W x 4: RGBA) as a PNG (zlib ``level``), atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=level)


def decode(task):
    """Worker: (path, size, keep pixels, label path) -> (model input, (W x H, RGB pixels or None,
    label mask or None, why the label is unusable or None), None), or (None, None, why)."""
    path, size, keep, label_path = task
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img if img.mode == "RGB" else img.convert("RGB")
    except DECODE_ERRORS as exc:
        return None, None, f"{type(exc).__name__}: {cli.first_line(exc)}"
    label = why = None
    if label_path:
        try:
            label = load_label(label_path, size=None)
        except UserError as exc:
            why = str(exc)
        if label is not None and label.shape != (rgb.height, rgb.width):
            height, width = label.shape
            label, why = None, f"{label_path}: {width} x {height}, the photo is {rgb.width} x {rgb.height}"
    pixels = np.asarray(rgb) if keep else None
    return image_to_array(rgb, size), (rgb.size, pixels, label, why), None


class Writer:
    """The loop's sink: each image's mask at its own size, written in a thread beside the model; ``rows``
    (file name, RLE), ``dices`` (file name, Dice) and ``unscored`` (label problems) fill in input order."""

    def __init__(self, args, batchsize):
        self.args, self.output, self.batchsize = args, Path(args.output), batchsize
        self.rows, self.dices, self.unscored, self.written = [], [], [], 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-writer")
        self.pending = deque()

    def __call__(self, items, outputs):
        logits = outputs[0]
        check_logits(logits, self.batchsize, self.args.size)
        for slot, (path, extra) in enumerate(items):
            self.pending.append(self.pool.submit(self.finish, Path(path), np.array(logits[slot]), *extra))
        while len(self.pending) > 2 * self.batchsize:  # bounded: at most two batches behind the model
            self.pending.popleft().result()

    def finish(self, photo, logits, size, pixels, label, why):
        mask = mask_at(logits, size, self.args.threshold)
        try:
            save_png(self.output / MASK_NAME.format(photo.stem), np.where(mask, 255, 0).astype(np.uint8))
            if self.args.cutout:
                save_png(self.output / CUTOUT_NAME.format(photo.stem), cutout(pixels, mask), CUTOUT_LEVEL)
        except OSError as exc:
            raise os_error(self.output, exc, "write the masks") from None
        self.written += 1
        if self.args.rle:
            self.rows.append((photo.name, rle_encode(mask)))
        if label is not None:
            self.dices.append((photo.name, iou_dice(mask, label)[1]))
        elif why:
            self.unscored.append(why)

    def flush(self):
        while self.pending:
            self.pending.popleft().result()


class FlipAveraged:
    """--tta, to the loop a backend: every batch runs a second time mirrored left-right; the logits
    are the mean of the two (the mirrored run's mirrored back)."""

    async_requests = 0  # one batch at a time: the loop's plain path
    async_upload = False

    def __init__(self, backend):
        self.backend = backend

    def upload(self, *arrays, wait=True):
        mirrored = [np.ascontiguousarray(a[..., ::-1]) for a in arrays]
        return self.backend.upload(*arrays, wait=wait), self.backend.upload(*mirrored, wait=wait)

    def run(self, plain, mirrored):  # each downloaded (copied) before the next run may reuse its buffers
        first = [np.array(o) for o in self.backend.download(self.backend.run(*plain))]
        second = self.backend.download(self.backend.run(*mirrored))
        return [(a + b[..., ::-1]) / 2 for a, b in zip(first, second)]

    def download(self, outputs):
        return outputs


# ---- the run ----


def choose_model(args):
    """(model file, backend name): --model on --backend (or its suffix's), else --weights (default: the
    bundled checkpoint) on --backend (or backend=auto's choice for --precision)."""
    path = Path(args.model or args.weights or PREDICT_WEIGHTS)
    if not path.is_file():
        raise UserError(f"{path}: model not found" + ("" if args.model or args.weights else
                                                      " (the bundled weights; pass --weights or --model)"))
    if args.model:
        return path, args.backend or backends.backend_for_model(args.model)
    return path, args.backend or backends.default_backend(args.precision)


def batch_to_ask(cls, model_path, requested, count):
    """On a dynamic batch axis: at most --batchsize photos per run, the ``count`` photos spread evenly
    over the runs (9 at 8: 5, then 4). A fixed-batch model: --batchsize as asked, else None (its own)."""
    if cls.fixed_batchsize(model_path) is not None:
        return requested
    runs = -(-count // (requested or DEFAULT_BATCH))
    return -(-count // runs)


def predict(args):
    """The whole run: returns the mean Dice (None without --labels)."""
    started = time.perf_counter()
    photos = gather_inputs(args.input)
    check_outputs(args, photos)
    labels = find_labels(args.labels, photos) if args.labels else {}
    model_path, name = choose_model(args)
    choice = session.choose(args, "predict", model=model_path, name=name)
    model = model_path
    with tempfile.TemporaryDirectory(prefix="unet_predict.") as folder:
        if not args.model and choice.cls.source != "pth":  # a backend of ONNX models: the checkpoint exported
            if args.precision in choice.cls.quantized:
                raise UserError(f"--precision {args.precision}: the {name} backend runs it from a quantised model, "
                                f"not from a checkpoint; pass one with --model (scripts/run_all.sh "
                                f"precision={args.precision} makes {choice.cls.quantized_name})")
            model = Path(folder) / f"{model_path.stem}.onnx"
            choice = dataclasses.replace(choice, model=str(model))
            from .export import pth_to_onnx
            exporting = time.perf_counter()
            pth_to_onnx(model_path, model, size=args.size)
            log.info("%s exported to ONNX for %s in %.1f s", model_path, name, time.perf_counter() - exporting)
        batchsize = batch_to_ask(choice.cls, model, args.batchsize, len(photos))
        try:
            Path(args.output).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(args.output, exc, "create the output folder") from None
        tasks = [(str(p), args.size, args.cutout, str(labels[p]) if labels else None) for p in photos]
        workers = min(args.workers or default_decoders(), len(tasks))
        log.info("%d photo(s), %s on %s, %d decoding process(es)", len(tasks), model_path, name, workers)
        bad = []
        with (Prefetcher(decode, tasks, workers, ahead=session.prefetch_depth(batchsize, workers)) as decoded,
              choice.open(batchsize=batchsize, device=args.device[0], threads=args.threads, size=args.size,
                          image_size=args.size, flow="predict") as opened):
            decoded.ahead = opened.prefetch_depth(workers)
            writer = Writer(args, opened.batchsize)
            backend = FlipAveraged(opened.backend) if args.tta else opened.backend
            spec = opened.backend.inputs[0]
            try:
                with progress(total=len(tasks), desc="predict", unit="img") as bar:
                    run_loop(backend, ((arrays, items) for arrays, (items, _) in
                                       decoded_units(decoded, tasks, spec, Timings(), bad)),
                             lambda items, outputs: (writer(items, outputs), bar.update(len(items))), Timings())
                    writer.flush()
            finally:
                writer.pool.shutdown(wait=True, cancel_futures=True)
    ran = (f"{model_path.name} on {name} {opened.backend.precision}, batch {opened.batchsize}"
           + (", flip TTA" if args.tta else ""))
    return finish(args, writer, bad, len(tasks), time.perf_counter() - started, ran)


def finish(args, writer, bad, total, seconds, ran):
    """Write the submission and dice.csv, print the summary lines; bad photos end in one error line."""
    mean_dice = None
    if writer.written:
        if args.rle:
            try:
                Path(args.rle).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(args.rle, submission_text(writer.rows))
            except OSError as exc:
                raise os_error(args.rle, exc) from None
            log.info("wrote %s (%d rows)", args.rle, len(writer.rows))
        if writer.dices:
            mean_dice = float(np.mean([value for _, value in writer.dices]))
            lines = ["img,dice", *(f"{name},{value:.6f}" for name, value in writer.dices), f"mean,{mean_dice:.6f}"]
            atomic_write_text(Path(args.output) / DICE_NAME, "\n".join(lines) + "\n")  # OSError: run_cli
        what = "masks and cut-outs" if args.cutout else "masks"
        print(f"predict: {writer.written} of {total} photos, {what} in {args.output} "
              f"({ran}; {seconds:.1f} s, {seconds / writer.written:.2f} s per photo)", flush=True)
        if mean_dice is not None:
            print(f"Dice: {mean_dice:.6f} (mean over {len(writer.dices)} photos at their own resolution, "
                  f"the competition's metric)", flush=True)
    problems = []
    if bad:
        problems.append(f"{len(bad)} unreadable photo(s) skipped: {', '.join(map(str, bad))}")
    if writer.unscored:
        problems.append(f"{len(writer.unscored)} photo(s) not scored: {'; '.join(writer.unscored)}")
    if problems:
        raise UserError("; ".join(problems) + (" (the others were written)" if writer.written else ""))
    return mean_dice


# argparse type of --threshold: a number strictly between 0 and 1
probability_threshold = cli.number(float, lambda value: 0.0 < value < 1.0,
                                   "is not between 0 and 1 (0 would make all car, 1 none)")


def build_parser():
    parser = cli.parser("python3 -m unet_infer.predict", __doc__)
    add = parser.add_argument
    add("--input", "-i", required=True, nargs="+", action="extend",
        help="photo files and folders of photos (.jpg, .jpeg, .png)")
    add("--output", "-o", required=True, help="folder for <stem>_mask.png (and cut-outs, dice.csv)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help=f"UNet checkpoint (.pth; exported for an ONNX backend; default: the "
                                          f"bundled {PREDICT_WEIGHTS.parent.name}/{PREDICT_WEIGHTS.name}; "
                                          f"{PREDICT_WEIGHTS.parent.name}/unet_carvana.pth is narrower and faster)")
    source.add_argument("--model", "-m", help=f"model file: {session.model_files()}")
    add("--threshold", type=probability_threshold, default=DEFAULT_THRESHOLD,
        help="car where the probability is above it; between 0 and 1")
    add("--cutout", action="store_true", help="also write <stem>_cutout.png: RGBA, alpha = mask")
    add("--tta", action="store_true",
        help="test-time augmentation: each photo also runs mirrored left-right and the logits are averaged "
             "(twice the model's time)")
    add("--rle", help="also write this submission CSV (img,rle_mask)")
    add("--labels", help="folder of <stem>_mask.gif (or .png) labels: print the mean Dice, write dice.csv")
    add("--batchsize", type=cli.int_at_least(1),
        help=f"at most this many photos per model run, spread evenly over the runs (without it: "
             f"{DEFAULT_BATCH}; a fixed-batch model uses its own)")
    session.add_model_flags(parser)
    cli.add_quiet(parser)
    return parser


def main(argv=None):
    session.flow_main(build_parser, predict, argv, one_device="predict runs on one device")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
