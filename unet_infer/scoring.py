"""The scored run that the stream and the cluster share; each flow only executes its batches (the
stream in this process, the cluster on Ray's actors) and says where a recorded batch belongs.

A unit (``journal.Unit``) is a scored batch; its ``extra`` holds its ``span`` [first, end) of the
run's positions (natural order), its unreadable images ``bad`` [[name, why]], its times ``ms`` and,
from an actor, ``actor``, ``pid``, ``restarted``, ``node_id``, ``meta``. A :class:`Tally` takes the
units in any order (:meth:`Tally.record`; :func:`resume`: the record's, after a stop) into two
float64 arrays of scores, the report's :class:`Extremes` and each part's batch times (the stream is
one part, each actor one); :func:`finish` writes the result files, the summary and the report's
masks from it, each as it is read, with no per-image list in memory.
"""

import bisect
import logging
from pathlib import Path

import numpy as np

from .cli import UserError
from .formats import natural_key
from .journal import pack_mask, unpack_mask
from .metrics import iou_dice, logits_to_mask
from .postprocess import check_logits
from .results import N_EXTREMES, Streamed, select_extremes, write_masks, write_scores
from .summary import write_summary

log = logging.getLogger(__name__)


class Extremes:
    """The report's worst and best images (``results.select_extremes``) while scores come, in any
    order: the n lowest by (IoU, name) and the 2n highest by (-IoU, name), whatever the final count
    a superset of the report's, and only their packed masks. An image among the run's kept is among
    any subset's: the masks that entered a scorer's extremes (an actor's, an attempt's) suffice."""

    def __init__(self, n=N_EXTREMES):
        self.n = n
        self.low, self.high = [], []  # sorted [(sort key, name, iou)], at most n and 2n
        self.kept = {}  # name -> packed mask

    def offer(self, name, iou, mask=None):
        """Offer a scored image and its packed mask, if known; True when it entered the kept."""
        entered = False
        for kept, key, limit in ((self.low, (iou, natural_key(name)), self.n),
                                 (self.high, (-iou, natural_key(name)), 2 * self.n)):
            if len(kept) < limit or key < kept[-1][0]:
                bisect.insort(kept, (key, name, iou))
                del kept[limit:]
                entered = True
        if entered:
            live = {entry[1] for entry in self.low + self.high}
            self.kept = {k: v for k, v in self.kept.items() if k in live}
            if mask is not None:
                self.kept[name] = mask
        return entered

    def masks(self):
        """``(report's images, {name: packed mask} of those whose mask came)``."""
        candidates = {name: {"name": name, "iou": iou} for _, name, iou in self.low + self.high}
        worst, best = select_extremes(list(candidates.values()), self.n)
        names = [record["name"] for record in worst + best]
        return names, {name: self.kept[name] for name in names if name in self.kept}


def masks_folder(args):
    """--masks, else ``<summary stem without _summary>_masks`` beside the summary, else None."""
    if args.masks:
        return Path(args.masks)
    if not args.summary:
        return None
    summary = Path(args.summary)
    return summary.with_name(f"{summary.stem.removesuffix('_summary')}_masks")


class Scorer:
    """Scores batches of logits (``batchsize`` slots at ``size``), with extremes of its own."""

    def __init__(self, batchsize, size):
        self.batchsize, self.size, self.extremes = batchsize, size, Extremes()

    def __call__(self, items, outputs):
        """``items``: ``[(image path, label mask), ...]`` of the batch's real slots, in slot order.
        Returns its records and ``{name: packed mask}`` of its images that entered the extremes."""
        logits = outputs[0]
        check_logits(logits, self.batchsize, self.size)
        records, entered = [], {}
        for slot, (path, label) in enumerate(items):
            name = Path(path).stem
            mask = logits_to_mask(logits[slot])
            iou, dice = iou_dice(mask, label)
            records.append({"name": name, "iou": iou, "dice": dice})
            if self.extremes.offer(name, iou):
                entered[name] = self.extremes.kept[name] = pack_mask(mask)
        return records, entered


class Tally:
    """A run's scores as its units come, in any order (see the module notes)."""

    def __init__(self, count, path):
        self.count, self.path = count, path  # the run's images, natural order: path(position)
        self.iou, self.dice = np.zeros(count), np.zeros(count)
        self.state = np.zeros(count, np.int8)  # 0: not yet, 1: scored, 2: unreadable
        self.why = {}  # position -> why it is unreadable
        self.extremes = Extremes()
        self.parts = {}  # actor ("" for the stream) -> its images, batch times, description, processes
        self.units = self.end = self.scored = 0  # units taken, the last one's end, images scored

    def record(self, journal, unit):
        journal.append(unit.id, unit.records, unit.masks, **unit.extra)
        self.take(unit)

    def take(self, unit):
        """Take a unit's scores; one that does not hold this run's images of its span: ValueError."""
        extra, records = unit.extra, unit.records
        first, end = (int(p) for p in extra["span"])
        names = [Path(self.path(p)).stem for p in range(first, min(end, self.count))]
        bad = {str(name): str(why) for name, why in extra.get("bad", [])}
        if (not 0 <= first < end <= self.count or [r["name"] for r in records] != [n for n in names if n not in bad]
                or not set(bad) <= set(names) or self.state[first:end].any()):
            raise ValueError(f"unit {unit.id} holds other images than this run's")
        scores = iter(records)
        for position, name in enumerate(names, first):
            if name in bad:
                self.unreadable(position, bad[name])
                continue
            record = next(scores)
            self.iou[position], self.dice[position], self.state[position] = record["iou"], record["dice"], 1
            self.extremes.offer(name, record["iou"], unit.masks.get(name))
        self.units, self.end, self.scored = self.units + 1, end, self.scored + len(records)
        if not records:
            return
        part = self.parts.setdefault(str(extra.get("actor", "")), {"images": 0, "times": {}, "meta": {}, "pids": set(),
                                                                   "restarted": set(), "nodes": []})
        part["images"] += len(unit.records)
        part["times"][unit.id] = tuple(float(t) for t in extra["ms"][:3])
        part["meta"] = part["meta"] or dict(extra.get("meta", {}))
        if "pid" in extra:
            part["pids"].add(int(extra["pid"]))
            if extra.get("restarted"):  # Ray's replacement of a process of this actor that died
                part["restarted"].add(int(extra["pid"]))
        if extra.get("node_id") and extra["node_id"] not in part["nodes"]:
            part["nodes"].append(extra["node_id"])

    def times(self, part):
        """A part's batch times in batch order: ``(compute, H2D, D2H)`` lists, ms."""
        times = self.parts[part]["times"]
        return tuple([times[k][i] for k in sorted(times)] for i in range(3))

    def unreadable(self, position, why=""):
        self.state[position], self.why[position] = 2, why

    def missing(self):
        """The paths of the images neither scored nor found unreadable."""
        return [self.path(p) for p in np.flatnonzero(self.state == 0)]

    def names(self):
        """The scored images' names, natural order (made as they are read)."""
        return (Path(self.path(p)).stem for p in np.flatnonzero(self.state == 1))

    def filesinfo(self):
        """The summary's ``filesinfo`` of the scored images, made as it is written."""
        return Streamed(self.scored, lambda: ((str(i), {"infiles": [self.path(p)], "outfiles": []})
                                              for i, p in enumerate(np.flatnonzero(self.state == 1))))

    def check_readable(self):
        """A UserError that names the unreadable images, if any (after the results are written)."""
        named = [self.path(p) + (f" ({why})" if why else "") for p, why in sorted(self.why.items())]
        if named:
            raise UserError(f"{len(named)} unreadable image(s), left out of the scores: {', '.join(named)}")


def resume(journal, count, path, fits):
    """A :class:`Tally` of the ``count`` images (``path(position)``) holding the units of the run's
    record; ``fits(tally, unit)`` (the flow's) raises ValueError for a unit out of place. A record
    that does not fit is set aside (``.damaged``) and the run starts afresh."""
    tally = Tally(count, path)
    try:
        for unit in journal.replay():
            fits(tally, unit)
            tally.take(unit)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("%s: %s; set aside as %s, starting afresh", journal.path, exc, journal.set_aside("damaged").name)
        return Tally(count, path)
    if tally.units:
        log.info("%s: resuming: %d unit(s), %d image(s) scored by %d earlier attempt(s)", journal.path,
                 tally.units, tally.scored, journal.attempts - 1)
    return tally


def finish(args, tally, keys, summarize):
    """Write the result files (``keys``: the model's summary keys, for the provenance), the summary
    (``summarize(filesinfo)``, the flow's) and the report's masks; returns ``(result, summary)``."""
    missing = [Path(path).stem for path in tally.missing()]  # a batch that no actor brought back
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise UserError(f"{len(missing)} image(s) with no record after the run: {shown}")
    if not tally.scored:
        raise UserError(f"none of the {tally.count} images could be read")
    scored = tally.state == 1
    made = {key: keys.get(key) for key in ("model", "weights", "backend", "precision")}
    result = write_scores(tally.names, tally.iou[scored], tally.dice[scored], args.result,
                          provenance={**made, "data": str(Path(args.data).resolve()), "size": args.size})
    summary = summarize(tally.filesinfo())
    if args.summary:
        write_summary(args.summary, summary)
    folder = masks_folder(args)
    if folder:
        names, masks = tally.extremes.masks()
        if len(masks) < len(names):  # only when an actor saw an image twice (a retry on itself)
            log.warning("%d of the report's masks did not come back; their overlays will be skipped",
                        len(names) - len(masks))
        write_masks(folder, {name: unpack_mask(mask) for name, mask in masks.items()}, tally.names())
    return result, summary


def add_result_flags(parser):
    """--result, --summary and --masks of a flow that scores as it goes (stream, cluster)."""
    add = parser.add_argument
    add("--result", required=True, help="per-image result text file; the .json of the same stem goes beside it")
    add("--summary", help="ais_bench-schema summary JSON to write (e.g. result/bs8_summary.json)")
    add("--masks", help="folder for the worst and best images' predicted masks (without it: "
                        "<summary name without _summary>_masks beside --summary; none without either)")
