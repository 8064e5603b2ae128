"""The scoring results, written and read here only.

- ``result.txt``: a header, then ``name IoU Dice`` per image (6 decimals, natural order of the name).
- ``result.json`` beside it (same stem): ``mean_iou`` (over all images, the headline),
  ``modelzoo_iou`` (the ModelZoo guide's figure: images with IoU >= 0.5 only), ``mean_dice``,
  ``n_images``, ``n_below_0_5``, ``per_image`` ([{name, iou, dice}]) and ``provenance``, what the
  run was made from as far as the scoring run knew it ({weights, model, backend, precision, size,
  and data for the stream and the cluster; batchsize, summary, outputs and masks for stage 6,
  ``postprocess.run_provenance``}) so that a report never mixes runs unawares.
- Predicted masks kept for the report's overlays: ``<folder>/<stem>.png``, mode L, 0 and 255.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .cli import UserError, os_error
from .formats import atomic_path, natural_key

MODELZOO_MIN_IOU = 0.5
RESULT_KEYS = ("mean_iou", "mean_dice", "n_images", "per_image")


class Streamed(dict):
    """A mapping that ``json.dump(..., indent=...)`` (its Python encoder) writes entry by entry from
    ``entries()``, called at each writing, never holding them all; ``len`` is ``count``."""

    def __init__(self, count, entries=tuple):
        self.count, self.entries = count, entries

    def __len__(self):
        return self.count

    def items(self):
        return self.entries()


class StreamedList(list):
    """The same for a list: ``entries()`` gives its values."""
    __init__, __len__ = Streamed.__init__, Streamed.__len__

    def __iter__(self):
        return iter(self.entries())


def result_json_path(result_txt):
    """``result.txt`` -> ``result.json`` beside it (a ``--result`` ending in .json is refused)."""
    path = Path(result_txt)
    if path.suffix.lower() == ".json":
        raise UserError(f"{path}: the result text file must not end in .json (the JSON goes beside it)")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a result file name")
    return path.with_suffix(".json")


def check_writable(result_txt, inputs=()):
    """Fail before any scoring when ``result_txt`` (or its JSON) cannot be written, or would
    overwrite one of ``inputs`` (files or folders: an output inside an input folder is refused)."""
    result_txt = Path(result_txt)
    targets = [result_txt, result_json_path(result_txt)]
    for folder in inputs:
        folder = Path(folder).resolve()
        for target in targets:
            resolved = target.resolve()
            if resolved == folder or folder in resolved.parents:
                raise UserError(f"{target}: would overwrite the input {folder}; write the result elsewhere")
    parent = result_txt.parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{parent}: cannot create the result folder ({probe} is a file)")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe_file = tempfile.mkstemp(prefix=f".{result_txt.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe_file)
    except OSError as exc:
        raise os_error(parent, exc, "write the result there") from None


def write_results(records, result_txt, provenance=None):
    """:func:`write_scores` of ``records`` ({name, iou, dice}, any order)."""
    records = sorted(records, key=lambda r: natural_key(r["name"]))
    return write_scores(lambda: (r["name"] for r in records), np.array([r["iou"] for r in records], np.float64),
                        np.array([r["dice"] for r in records], np.float64), result_txt, provenance)


def write_scores(names, ious, dices, result_txt, provenance=None):
    """Write ``result_txt`` (``name IoU Dice`` lines) and the JSON beside it from the IoUs and Dices
    (float64 arrays) of the images ``names()`` gives (in natural order, again at each call), the
    per-image lines written as they are made; return the result."""
    if not len(ious):
        raise ValueError("no records to score")
    kept = ious[ious >= MODELZOO_MIN_IOU]
    result = {
        "mean_iou": float(ious.mean()),
        "mean_dice": float(dices.mean()),
        "n_images": len(ious),
        "modelzoo_iou": float(kept.mean()) if kept.size else None,
        "n_below_0_5": int(ious.size - kept.size),
        "per_image": StreamedList(len(ious), lambda: ({"name": name, "iou": float(iou), "dice": float(dice)}
                                                      for name, iou, dice in zip(names(), ious, dices))),
    }
    if provenance:
        result["provenance"] = dict(provenance)
    result_txt = Path(result_txt)
    result_json = result_json_path(result_txt)
    try:
        result_txt.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(result_txt) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            fh.write("name IoU Dice\n")
            for r in result["per_image"]:
                fh.write(f"{r['name']} {r['iou']:.6f} {r['dice']:.6f}\n")
        with atomic_path(result_json) as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
            fh.write("\n")
    except OSError as exc:
        raise os_error(result_txt, exc) from None
    return result


def read_json_object(path, what):
    """The JSON object in ``path`` (a result or a summary: ``what``); anything else is a :class:`UserError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a {what} (expected a JSON object)")
    return data


def read_results(path):
    """A result JSON, checked for the keys its readers use; anything else is a :class:`UserError`."""
    data = read_json_object(path, "result")
    missing = [key for key in RESULT_KEYS if key not in data]
    if missing:
        raise UserError(f"{path}: not a scoring result (no {', '.join(missing)})")
    per_image = data["per_image"]
    if (not isinstance(per_image, list) or not per_image
            or not all(isinstance(r, dict) and {"name", "iou", "dice"} <= r.keys() for r in per_image)):
        raise UserError(f"{path}: 'per_image' must be a non-empty list of {{name, iou, dice}}")
    return data


def provenance(result):
    """The ``provenance`` block of a result (``{}`` when the scoring run did not record one)."""
    value = result.get("provenance")
    return value if isinstance(value, dict) else {}


def modelzoo_text(result):
    value = result.get("modelzoo_iou")
    return "n/a" if value is None else f"{value:.6f}"


def iou_line(result):
    """The one line printed at the end of a scoring run."""
    return (f"IOU Average: {result['mean_iou']:.6f} (ModelZoo figure, images with IoU >= "
            f"{MODELZOO_MIN_IOU}: {modelzoo_text(result)}; Dice {result['mean_dice']:.6f}; "
            f"{result['n_images']} images)")


def write_masks(folder, masks, names):
    """Write each boolean mask of ``masks`` as ``folder/<name>.png``; drop this run's ``names``' older PNGs."""
    folder = Path(folder)
    try:
        for name in names:
            stale = folder / f"{name}.png"
            if name not in masks and stale.is_file():
                stale.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        for name, mask in masks.items():
            with atomic_path(folder / f"{name}.png") as tmp:
                Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, format="PNG")
    except OSError as exc:
        raise os_error(folder, exc, "write the masks") from None


def read_mask_png(path, size=None):
    """A mask PNG as bool (car where the value is > 127), resized NEAREST to ``size`` when given."""
    with Image.open(path) as img:
        mask = img.convert("L")
        if size is not None and mask.size != (size, size):
            mask = mask.resize((size, size), Image.Resampling.NEAREST)
        return np.asarray(mask) > 127


N_EXTREMES = 4


def select_extremes(records, n=N_EXTREMES):
    """``(worst, best)``: the lowest-IoU records (worst first) and the highest (best first), the
    images a report draws. At most ``n`` each and never the same image twice: with fewer than 2n
    images, the worst get the larger half. Ties go in natural order of the name."""
    ordered = sorted(records, key=lambda r: (r["iou"], natural_key(r["name"])))
    n_worst = min(n, (len(ordered) + 1) // 2)
    n_best = min(n, len(ordered) - n_worst)
    worst = ordered[:n_worst]
    best = sorted(ordered[n_worst:], key=lambda r: (-r["iou"], natural_key(r["name"])))[:n_best]
    return worst, best
