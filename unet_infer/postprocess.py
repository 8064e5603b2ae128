"""Stage 6: score the model's outputs against the Carvana masks (IoU and Dice of the car class).

An output ``<stem>.bin`` holds float32 logits, 1 x S x S (car where logit > 0, i.e.
sigmoid > 0.5) or 2 x S x S (milesial master: car where class 1 wins the argmax), told apart
by the file size. ``<stem>_0.bin`` (the runner's name, json_parse not run) is read as
``<stem>`` when ``<stem>.bin`` is absent and ``<stem>``'s mask exists.

Its label is ``<label>/<stem>_mask.gif``: palette indices, car == 1 (``'L'`` and ``'1'`` masks,
e.g. 0/255 PNGs: car where the value is > 0), resized to S x S with NEAREST when its size
differs.

The mean IoU over all images is the headline; the ModelZoo guide's figure (``modelzoo_iou``)
leaves out the "difficult" images whose IoU is below 0.5.
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError
from .formats import DEFAULT_SIZE, atomic_write_text, natural_key, output_nbytes, read_bin
from .metrics import iou_dice, logits_to_mask
from .preprocess import DECODE_ERRORS, check_size, find_files, parallel_map

MASK_SUFFIX = "_mask.gif"
MODELZOO_MIN_IOU = 0.5
CLASSES = (1, 2)


def mask_path(label_dir, stem):
    return Path(label_dir) / f"{stem}{MASK_SUFFIX}"


def output_classes(path, size=DEFAULT_SIZE):
    """1 or 2, from the size of the output file; any other size is a :class:`UserError`."""
    nbytes = Path(path).stat().st_size
    for classes in CLASSES:
        if nbytes == output_nbytes(size, classes):
            return classes
    expected = " or ".join(f"{output_nbytes(size, c)} ({c} x {size} x {size} float32)" for c in CLASSES)
    raise UserError(f"{path}: {nbytes} bytes, expected {expected}")


def load_label(path, size=DEFAULT_SIZE):
    """The car mask (bool, size x size) of a label image; see the module notes for its modes."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode not in ("P", "L", "1"):
                raise UserError(f"{path}: a {mode} image, expected a palette (P), L or 1 mask")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.NEAREST)
            values = np.array(img)
    except DECODE_ERRORS as exc:
        raise UserError(f"{path}: cannot read the mask ({type(exc).__name__}: {exc})") from None
    return values == 1 if mode == "P" else values > 0


def score_arrays(logits, label_mask):
    """(IoU, Dice) of the car class for one image's logits and its boolean label mask."""
    return iou_dice(logits_to_mask(logits), label_mask)


def score_file(out_path, label_path, size=DEFAULT_SIZE):
    """(IoU, Dice) of one output file against its mask file."""
    classes = output_classes(out_path, size)
    logits = read_bin(out_path, shape=(classes, size, size))
    return score_arrays(logits, load_label(label_path, size))


def _score_job(job):
    name, out_path, label_path, size = job
    iou, dice = score_file(out_path, label_path, size)
    return {"name": name, "iou": iou, "dice": dice}


def find_outputs(output_dir, label_dir, size=DEFAULT_SIZE):
    """``[(name, output path, mask path), ...]`` in natural order, every one checked.

    Files other than ``.bin`` are skipped with a warning. No ``.bin`` file, a missing mask or
    an output of the wrong size is a :class:`UserError`.
    """
    outputs = find_files(output_dir, (".bin",), "output")
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: label folder not found")
    if not outputs:
        raise UserError(f"{output_dir}: no .bin output files")
    present = {path.name for path in outputs}
    found, stems = [], {}
    for path in outputs:
        stem, label = path.stem, mask_path(label_dir, path.stem)
        if not label.is_file() and stem.endswith("_0") and stem[:-2] + path.suffix not in present:
            if mask_path(label_dir, stem[:-2]).is_file():
                stem, label = stem[:-2], mask_path(label_dir, stem[:-2])
        if not label.is_file():
            raise UserError(f"{label}: mask not found (the label of {path})")
        if stem in stems:
            raise UserError(f"{stems[stem]} and {path} are both outputs for {stem}")
        stems[stem] = path
        output_classes(path, size)
        found.append((stem, path, label))
    return found


def score_folder(output_dir, label_dir, size=DEFAULT_SIZE, workers=None):
    """Score every output in ``output_dir``; ``[{"name", "iou", "dice"}, ...]`` in natural order."""
    check_size(size)
    jobs = [(name, str(out), str(label), size)
            for name, out, label in find_outputs(output_dir, label_dir, size)]
    records = list(parallel_map(_score_job, jobs, workers, desc="postprocess", unit="img"))
    return sorted(records, key=lambda record: natural_key(record["name"]))


def summarise(records):
    """Means over all images, the ModelZoo figure (IoU >= 0.5 only) and the per-image list."""
    if not records:
        raise ValueError("no records to summarise")
    ious = np.array([record["iou"] for record in records], dtype=np.float64)
    dices = np.array([record["dice"] for record in records], dtype=np.float64)
    kept = ious[ious >= MODELZOO_MIN_IOU]
    return {
        "mean_iou": float(ious.mean()),
        "mean_dice": float(dices.mean()),
        "n_images": len(records),
        "modelzoo_iou": float(kept.mean()) if kept.size else None,
        "n_below_0_5": int(ious.size - kept.size),
        "per_image": [{"name": r["name"], "iou": float(r["iou"]), "dice": float(r["dice"])} for r in records],
    }


def result_json_path(result_txt):
    """``result.txt`` -> ``result.json`` beside it."""
    path = Path(result_txt)
    if path.suffix.lower() == ".json":
        raise UserError(f"{path}: the result text file must not end in .json (the JSON goes beside it)")
    return path.with_suffix(".json")


def write_results(records, result_txt):
    """Write ``result_txt`` (``name IoU Dice`` lines) and the JSON beside it; return the summary."""
    result_txt = Path(result_txt)
    result_json = result_json_path(result_txt)
    summary = summarise(records)
    lines = ["name IoU Dice"] + [f"{r['name']} {r['iou']:.6f} {r['dice']:.6f}" for r in summary["per_image"]]
    try:
        result_txt.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(result_txt, "\n".join(lines) + "\n")
        atomic_write_text(result_json, json.dumps(summary, indent=2) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {result_txt} / {result_json}: {exc}") from None
    return summary


def summary_line(summary):
    """The one line printed at the end of a scoring run."""
    modelzoo = summary["modelzoo_iou"]
    modelzoo = "n/a" if modelzoo is None else f"{modelzoo:.6f}"
    return (f"IOU Average: {summary['mean_iou']:.6f} (ModelZoo figure, images with IoU >= "
            f"{MODELZOO_MIN_IOU}: {modelzoo}; Dice {summary['mean_dice']:.6f}; "
            f"{summary['n_images']} images)")
