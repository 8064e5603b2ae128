"""The driver's side of the cluster run, with no Ray in it: the batch plan, and the actors' rows
gathered into units (one per planned batch, unit id = batch index), each recorded (``journal``) and
taken into the run's ``scoring.Tally`` once all its images came back, in whatever order the actors
finish. Ray Data re-runs the batches of an actor that died; a row of a batch already taken is
dropped (and counted; one with another IoU is an error). A unit's ``extra`` names the actor, its
process (``pid``, ``node_id``, ``restarted``: Ray replaced one that died) and, in each actor's
first unit, its description (``meta``).
"""

import json
from pathlib import Path

from ..bench.files import plan_batches as plan
from ..cli import UserError
from ..journal import Unit
from ..scoring import resume

# One row per image, from the actor to the driver (no logits: a packed mask, journal.pack_mask, only
# for the few images that entered the actor's extremes).
ROW_KEYS = ("name", "path", "iou", "dice", "why", "batch", "slot", "actor", "compute_ms", "h2d_ms", "d2h_ms",
            "meta", "mask")


def plan_batches(pairs, batchsize):
    """The dataset's rows: ``{"batch": k, "images": [...], "labels": [...]}``, the real slots of the
    runner's batches (``bench.files.plan_batches``: natural order, the last one short)."""
    rows = []
    for batch in plan(len(pairs), batchsize):
        chunk = [pairs[i] for i in batch.files[:batch.real]]
        rows.append({"batch": batch.index, "images": [str(image) for _, image, _ in chunk],
                     "labels": [str(label) for _, _, label in chunk]})
    return rows


class Recorder:
    """The run's tally (``scoring.Tally``, the record's batches replayed into it), and the actors'
    rows gathered by planned batch (:meth:`add`): a batch whose images all came back is recorded in
    ``journal`` and taken into the tally."""

    def __init__(self, journal, plan):
        self.journal, self.plan = journal, plan
        paths, self.spans = [], []  # the run's images; [first, end) of each batch's among them
        for row in plan:
            self.spans.append([len(paths), len(paths) + len(row["images"])])
            paths += row["images"]
        self.rows, self.duplicates = {}, 0  # batch -> {name: row} of the batches not complete yet
        self.tally = resume(journal, len(paths), paths.__getitem__, self.fits)  # a record set aside: afresh

    def fits(self, tally, unit):
        """A recorded unit is its planned batch (for ``scoring.resume``)."""
        if not 0 <= unit.id < len(self.spans) or unit.extra["span"] != self.spans[unit.id]:
            raise ValueError(f"unit {unit.id} is no batch of this run's plan")

    def pending(self):
        """The plan's rows not recorded yet."""
        return [row for row in self.plan if row["batch"] not in self.journal.units]

    def add(self, rows):
        """One block of rows (a dict of equal-length arrays, ``ROW_KEYS``); each of its batches that is
        now complete is recorded and taken."""
        for i in range(len(rows["name"])):
            self.add_row({key: rows[key][i] for key in ROW_KEYS})
        for batch in sorted({int(k) for k in rows["batch"]}):
            if batch not in self.journal.units and len(self.rows.get(batch, {})) == len(self.plan[batch]["images"]):
                self.tally.record(self.journal, self.unit(batch, self.rows.pop(batch)))

    def add_row(self, row):
        name, batch = str(row["name"]), int(row["batch"])
        names = self.names(batch) if 0 <= batch < len(self.plan) else []
        if name not in names:
            raise UserError(f"an actor returned {name}, which is not an image of this run")
        if batch in self.journal.units:
            position = self.spans[batch][0] + names.index(name)
            kept = self.tally.iou[position] if self.tally.state[position] == 1 else None
        elif name in self.rows.setdefault(batch, {}):
            kept = None if str(self.rows[batch][name]["why"]) else self.rows[batch][name]["iou"]
        else:
            self.rows[batch][name] = row
            return
        self.duplicates += 1  # a retried batch's second record
        if kept is not None and not str(row["why"]) and float(row["iou"]) != float(kept):
            raise UserError(f"{name} was scored twice with different IoUs ({float(kept)} and {float(row['iou'])}): "
                            f"the actors do not compute alike")

    def names(self, batch):
        return [Path(path).stem for path in self.plan[batch]["images"]]

    def unit(self, batch, rows):
        names = self.names(batch)
        scored = [rows[name] for name in names if not str(rows[name]["why"])]
        extra = {"span": self.spans[batch], "bad": [[name, str(rows[name]["why"])] for name in names
                                                    if str(rows[name]["why"])]}
        if scored:  # the first row: its batch's times and (real actors' rows) its process's description
            actor, meta = str(scored[0]["actor"]), json.loads(str(scored[0]["meta"]) or "{}")
            extra.update(actor=actor, ms=[float(scored[0][key]) for key in ("compute_ms", "h2d_ms", "d2h_ms")])
            if meta:
                extra.update(pid=int(meta.pop("pid", 0)), restarted=bool(meta.pop("restarted", False)),
                             node_id=meta.pop("node_id", None))
            if meta and not self.tally.parts.get(actor, {}).get("meta"):
                extra["meta"] = meta
        records = [{"name": str(row["name"]), "iou": float(row["iou"]), "dice": float(row["dice"])} for row in scored]
        return Unit(batch, records, {str(row["name"]): str(row["mask"]) for row in scored if str(row["mask"])}, extra)
