"""Scoring as a flow goes (the stream, each Ray actor of the cluster): per-image IoU and Dice of
each batch's logits (``Scorer``, with ``postprocess.score_arrays``, the file flow's own), the
predicted masks of the images the report draws, kept while streaming (``Extremes``), and the
masks written for the report's overlays (``write_masks``, ``masks_folder``); the command-line
flags of such a flow's outputs (``add_result_flags``).
"""

import bisect
from pathlib import Path

from .formats import natural_key
from .metrics import logits_to_mask
from .postprocess import check_logits, score_arrays
from .results import N_EXTREMES, select_extremes, write_mask_png


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


def add_result_flags(parser):
    """--result, --summary and --masks of a flow that scores as it goes (stream, cluster)."""
    add = parser.add_argument
    add("--result", required=True, help="per-image result text file; the .json of the same stem goes beside it")
    add("--summary", help="ais_bench-schema summary JSON to write (e.g. result/bs8_summary.json)")
    add("--masks", help="folder for the worst and best images' predicted masks (without it: "
                        "<summary name without _summary>_masks beside --summary; none without either)")
