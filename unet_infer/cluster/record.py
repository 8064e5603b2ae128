"""The cluster run's record (``journal``), so that a stopped run resumes where it stopped.

One unit per planned batch (``collect.plan_batches``: unit id = batch index), recorded by the
driver as soon as every image of that batch came back from an actor (scored or unreadable),
whatever order the actors finish them in. A unit holds its images' scores, the masks that came
with them (those of images that may be the report's worst or best), its unreadable images
(name, why) and, in ``extra``: the actor that scored it (``actor``), that process's ``pid``,
``node_id`` and whether it replaced one that died (``restarted``), the batch's compute/H2D/D2H
times (``ms``), and the actor's description (backend, precision, machine, ...: ``meta``) in the
first unit of each actor only.

On a resumed run (:meth:`Recorder.resume`) the recorded units are replayed into the collector as
the rows they came from, so the summary credits each earlier actor with its batches and times,
the report's masks come back, and only the batches not recorded (:meth:`Recorder.pending`) go to
Ray. A record whose units are not this plan's batches (other images) is set aside as
``.damaged`` and the run starts afresh.

What the record is bound to (:func:`made_from`, with ``journal.run_key``: the model file, the
images, the masks): the batch size, the input size, the backend, its precision and options, and
whether the actors run on GPUs; not the number of actors, their threads, or the nodes, which a
resumed run may have otherwise (a lost node's actors are gone).
"""

import json
import logging
from pathlib import Path

from .collect import pack_mask, unpack_mask

log = logging.getLogger(__name__)


def made_from(backend, precision, args, options):
    """The options that change the scores, for ``journal.run_key``."""
    return {"flow": "cluster", "batchsize": args.batchsize, "size": args.size, "backend": backend,
            "precision": precision, "gpus": bool(args.gpus_per_actor), **options}


class Recorder:
    """Records the planned batches into ``journal`` as the ``collector`` completes them; replays them."""

    def __init__(self, journal, plan, collector, size):
        self.journal, self.collector, self.size = journal, collector, size
        self.paths = {row["batch"]: {Path(p).stem: p for p in row["images"]} for row in plan}
        self.names = {k: list(paths) for k, paths in self.paths.items()}  # slot order
        self.plan = plan
        self.described = {}  # actor -> its description, once in the record

    def pending(self):
        """The plan's rows not recorded yet."""
        return [row for row in self.plan if row["batch"] not in self.journal.units]

    def resume(self):
        """Replay the record into the collector; returns the images it scored (0: a fresh run).
        A record that is not this plan's is set aside (``.damaged``) and the run starts afresh."""
        try:
            for unit in self.journal.units.values():
                self._replay(unit)
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.journal.set_aside("damaged")
            log.warning("%s: %s; set aside as %s, starting afresh", self.journal.path, exc, aside.name)
            self.collector.reset()
            self.described = {}
            return 0
        resumed = len(self.collector.records)
        if self.journal.units:
            log.info("%s: resuming: %d batch(es), %d image(s) scored by %d earlier attempt(s); %d batch(es) left",
                     self.journal.path, len(self.journal.units), resumed, self.journal.attempts - 1,
                     len(self.plan) - len(self.journal.units))
        return resumed

    def _replay(self, unit):
        if unit.id not in self.names:
            raise ValueError(f"unit {unit.id} is no batch of this run's plan")
        names, extra = self.names[unit.id], unit.extra
        bad = {str(name): str(why) for name, why in extra.get("bad", [])}
        scored = [r["name"] for r in unit.records]
        if sorted(scored + list(bad)) != sorted(names) or scored != [n for n in names if n not in bad]:
            raise ValueError(f"unit {unit.id} holds other images than batch {unit.id} of this run")
        actor = str(extra.get("actor", ""))
        if "meta" in extra:
            self.described[actor] = dict(extra["meta"])
        add, paths = self.collector.add_row, self.paths[unit.id]
        for name, why in bad.items():
            add(_row(name, paths[name], unit.id, -1, actor, why=why))
        if not unit.records:
            return
        meta = {**self.described[actor], "pid": extra["pid"], "restarted": bool(extra.get("restarted")),
                "node_id": extra.get("node_id")}
        for slot, record in enumerate(unit.records):
            mask = unit.masks.get(record["name"])
            add(_row(record["name"], paths[record["name"]], unit.id, slot, actor, record=record, ms=extra["ms"],
                     meta=json.dumps(meta) if slot == 0 else "", mask=b"" if mask is None else pack_mask(mask)))

    def record(self, rows):
        """After ``collector.add(rows)``: record each batch of ``rows`` that is now complete."""
        for batch in sorted({int(k) for k in rows["batch"]}):
            self.record_batch(batch)

    def record_batch(self, batch):
        names, c = self.names.get(batch), self.collector
        if names is None or batch in self.journal.units or any(n not in c.records and n not in c.bad for n in names):
            return False
        extra = {"bad": [[n, c.bad[n][1]] for n in names if n in c.bad]}
        scored_by = c.scored_by.get(batch)
        if scored_by is not None:
            actor, meta = scored_by
            extra.update(actor=actor, ms=list(c.batches[actor][batch]), pid=int(meta.get("pid", 0)),
                         restarted=bool(meta.get("restarted")), node_id=meta.get("node_id"))
            if actor not in self.described:
                self.described[actor] = {k: v for k, v in meta.items() if k not in ("pid", "restarted", "node_id")}
                extra["meta"] = self.described[actor]
        masks = {n: unpack_mask(c.masks[n], self.size) for n in names if n in c.masks}
        return self.journal.append(batch, [c.records[n] for n in names if n in c.records], masks, **extra)


def _row(name, path, batch, slot, actor, record=None, why="", ms=(0.0, 0.0, 0.0), meta="", mask=b""):
    """A row as an actor returns it (``collect.ROW_KEYS``)."""
    return {"name": name, "path": path, "iou": record["iou"] if record else float("nan"),
            "dice": record["dice"] if record else float("nan"), "why": why, "batch": batch, "slot": slot,
            "actor": actor, "compute_ms": float(ms[0]), "h2d_ms": float(ms[1]), "d2h_ms": float(ms[2]),
            "meta": meta, "mask": mask}
