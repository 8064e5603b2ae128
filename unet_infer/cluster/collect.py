"""The driver's side of the cluster run, with no Ray in it: the batch plan, and the collection of
the actors' records, once per image, checked against the plan.

Exactly once: Ray Data re-runs the batches of an actor that died (and a task that failed) on
another actor, and only a finished task's output reaches the driver; still, records are kept by
image name, a second record of a name is dropped (and counted; a second one with another IoU is
an error), and at the end every planned image must be there exactly once, scored or unreadable: a
missing one is an error that names it.
"""

import numpy as np

from ..bench.batching import plan_batches as plan
from ..cli import UserError
from ..formats import natural_key
from ..summary import build_summary

# One row per image, from the actor to the driver (no logits: a packed mask only for the few
# images that may be the report's worst or best).
ROW_KEYS = ("name", "path", "iou", "dice", "why", "batch", "slot", "actor", "compute_ms", "h2d_ms", "d2h_ms",
            "meta", "mask")


def plan_batches(pairs, batchsize):
    """The dataset's rows: ``{"batch": k, "images": [...], "labels": [...]}``, the real slots of the
    runner's batches (``bench.batching.plan_batches``: natural order, the last one short)."""
    rows = []
    for batch in plan(len(pairs), batchsize):
        chunk = [pairs[i] for i in batch.files[:batch.real]]
        rows.append({"batch": batch.index, "images": [str(image) for _, image, _ in chunk],
                     "labels": [str(label) for _, _, label in chunk]})
    return rows


def pack_mask(mask):
    """A bool mask as bytes, 8 pixels a byte (what crosses the object store for an extreme image)."""
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1)).tobytes()


def unpack_mask(data, size):
    return np.unpackbits(np.frombuffer(data, np.uint8), count=size * size).reshape(size, size).astype(bool)


def missing_error(names, what="no record"):
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return UserError(f"{len(names)} image(s) with {what} after the run: {shown}")


class Collector:
    """Records by image name; per actor, the batches it was credited with (their times and metadata)."""

    def __init__(self, planned):
        self.planned = set(planned)
        self.records = {}  # name -> {"name", "iou", "dice"}
        self.paths = {}  # name -> image path
        self.bad = {}  # name -> (path, why)
        self.masks = {}  # name -> packed mask bytes
        self.batches = {}  # actor -> {batch: (compute, h2d, d2h)}
        self.images = {}  # actor -> [names]
        self.meta = {}  # actor -> metadata of its first process (backend, machine, node, pid, ...)
        self.pids = {}  # actor -> the pids of its processes that returned records
        self.restarted = {}  # actor -> those of them that replaced a process that died
        self.nodes = {}  # actor -> the Ray node ids of its processes, in the order seen
        self.scored_by = {}  # batch -> (actor, metadata of the process that scored it)
        self.duplicates = 0

    def reset(self):
        """Forget every record (a replayed record that turned out not to be this run's)."""
        self.__init__(self.planned)

    def add(self, rows):
        """One block of rows (a dict of equal-length arrays, ``ROW_KEYS``)."""
        for i in range(len(rows["name"])):
            self.add_row({key: rows[key][i] for key in ROW_KEYS})

    def add_row(self, row):
        name = str(row["name"])
        if name not in self.planned:
            raise UserError(f"an actor returned {name}, which is not an image of this run")
        if name in self.records or name in self.bad:
            self.duplicates += 1
            kept = self.records.get(name)
            if kept is not None and str(row["why"]) == "" and float(row["iou"]) != kept["iou"]:
                raise UserError(f"{name} was scored twice with different IoUs ({kept['iou']} and "
                                f"{float(row['iou'])}): the actors do not compute alike")
            return
        actor = str(row["actor"])
        if str(row["meta"]):
            meta = _decode_meta(str(row["meta"]))
            self.meta.setdefault(actor, meta)
            self.scored_by[int(row["batch"])] = (actor, meta)
            if meta.get("node_id") and meta["node_id"] not in self.nodes.setdefault(actor, []):
                self.nodes[actor].append(meta["node_id"])
            self.pids.setdefault(actor, set()).add(int(meta.get("pid", 0)))
            if meta.get("restarted"):  # Ray's replacement of a process of this actor that died
                self.restarted.setdefault(actor, set()).add(int(meta.get("pid", 0)))
        if str(row["why"]):
            self.bad[name] = (str(row["path"]), str(row["why"]))
            return
        self.records[name] = {"name": name, "iou": float(row["iou"]), "dice": float(row["dice"])}
        self.paths[name] = str(row["path"])
        self.images.setdefault(actor, []).append(name)
        self.batches.setdefault(actor, {})[int(row["batch"])] = (float(row["compute_ms"]), float(row["h2d_ms"]),
                                                                 float(row["d2h_ms"]))
        if len(row["mask"]):
            self.masks[name] = bytes(row["mask"])

    def check(self):
        """Every planned image exactly once (scored or unreadable); else a UserError naming the missing."""
        missing = sorted(self.planned - set(self.records) - set(self.bad), key=natural_key)
        if missing:
            raise missing_error(missing)

    def ordered_records(self):
        return sorted(self.records.values(), key=lambda r: natural_key(r["name"]))

    def actor_summaries(self, args, batchsize):
        """One ais_bench summary per actor: its images (filesinfo) and the times of its batches."""
        parts = []
        for actor in sorted(self.images, key=natural_key):
            times = [self.batches[actor][k] for k in sorted(self.batches[actor])]
            names = sorted(self.images[actor], key=natural_key)
            filesinfo = {i: {"infiles": [self.paths[n]], "outfiles": []} for i, n in enumerate(names)}
            meta = dict(self.meta.get(actor, {}))
            pids = sorted(self.pids.get(actor, {0}))
            meta.pop("pid", None)
            meta.pop("restarted", None)
            meta.pop("node_id", None)
            part = build_summary(filesinfo, args, [t[0] for t in times], [t[1] for t in times],
                                 [t[2] for t in times], batchsize, pids[-1],
                                 extra={"device_label": actor, "mode": "cluster", **meta, "pids": pids,
                                        "node_ids": self.nodes.get(actor, []),
                                        "restarts": len(self.restarted.get(actor, ()))})
            parts.append(part)
        return parts

    def h2d_d2h(self):
        """All credited batches' H2D and D2H times (ms), for the merged summary."""
        times = [t for batches in self.batches.values() for t in batches.values()]
        return [t[1] for t in times], [t[2] for t in times]


def _decode_meta(text):
    import json
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
