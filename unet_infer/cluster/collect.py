"""The driver's side of the cluster run, with no Ray in it: the batch plan, and the actors' units
(one per planned batch, unit id = batch index), each recorded and taken into the run's
``scoring.Tally`` as it comes back, in any order; a retried batch's second unit is dropped. A
unit's ``extra`` names the actor, its process (``pid``, ``node_id``, ``restarted``) and, in each
actor's first unit, its description (``meta``).
"""

import json
from pathlib import Path

from ..bench.files import plan_batches as plan
from ..cli import UserError
from ..journal import Unit
from ..scoring import resume


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
    """The run's tally (``scoring.Tally``, the record's batches replayed into it), taking the actors'
    units (:meth:`add`) and recording them in ``journal``."""

    def __init__(self, journal, plan):
        self.journal, self.plan = journal, plan
        paths, self.spans = [], []  # the run's images; [first, end) of each batch's among them
        for row in plan:
            self.spans.append([len(paths), len(paths) + len(row["images"])])
            paths += row["images"]
        self.duplicates = 0  # images of the retried batches' second units
        self.tally = resume(journal, len(paths), paths.__getitem__, self.fits)  # a record set aside: afresh

    def fits(self, tally, unit):
        """A recorded unit is its planned batch (for ``scoring.resume``)."""
        if not 0 <= unit.id < len(self.spans) or unit.extra["span"] != self.spans[unit.id]:
            raise ValueError(f"unit {unit.id} is no batch of this run's plan")

    def pending(self):
        return [row for row in self.plan if row["batch"] not in self.journal.units]

    def add(self, rows):
        """One block of the actors' rows (``{"batch", "unit"}``, ``pipeline.InferActor``): each batch
        not recorded yet is recorded and taken, a retried batch's second unit dropped; returns the
        count of images taken."""
        taken = 0
        for batch, text in zip(rows["batch"], rows["unit"]):
            batch, unit = int(batch), json.loads(str(text))
            names = [Path(path).stem for path in self.plan[batch]["images"]] if 0 <= batch < len(self.plan) else []
            got = [record["name"] for record in unit["records"]] + [name for name, _ in unit["bad"]]
            if sorted(got) != sorted(names):
                raise UserError(f"an actor returned {', '.join(got)} as batch {batch}, not the images of this "
                                f"run's batch")
            if batch in self.journal.units:
                self.drop(batch, names, unit)
                continue
            if self.tally.parts.get(unit.get("actor"), {}).get("meta"):
                del unit["meta"]  # the actor's description: in its first unit only
            records, masks = unit.pop("records"), unit.pop("masks")
            self.tally.record(self.journal, Unit(batch, records, masks, {"span": self.spans[batch], **unit}))
            taken += len(names)
        return taken

    def drop(self, batch, names, unit):
        """A retried batch's second unit: its images counted; one scored with another IoU is an error."""
        self.duplicates += len(names)
        for record in unit["records"]:
            position = self.spans[batch][0] + names.index(record["name"])
            kept = self.tally.iou[position]
            if self.tally.state[position] == 1 and record["iou"] != kept:
                raise UserError(f"{record['name']} was scored twice with different IoUs ({kept} and {record['iou']}): "
                                f"the actors do not compute alike")
