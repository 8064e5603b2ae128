"""Which runs the report's table lists, and what each row says.

A row is one batch size of one run of the work folder (the plain names' results, or those of
another backend or precision kept beside them: ``stages.run_tag``) with both its scores and its
scored run's summary, plus the pure-inference run's throughput when that run's summary is there.
Rows of different weights are one run beside another, not one run: :func:`check_weights` refuses them.
"""

import logging
from pathlib import Path

from .. import summary as summ
from ..cli import UserError
from ..machine import describe_machine
from ..results import provenance, read_results
from ..workdir import Workdir

log = logging.getLogger(__name__)

NA = "n/a"


def _text(value):
    return value if isinstance(value, str) and value else None


def pure_throughput(w, bs, weights):
    """images/s of the pure-inference run of batch size ``bs``; None when there is none, or when it
    records other weights than the scored run (a stale timing: left out with a warning)."""
    path = w.perf_summary(bs)
    if not path.is_file():
        return None
    perf = summ.read_summary(path)
    timed = summ.weights(perf)
    if weights and timed and timed != weights:
        log.warning("%s: timed weights %s, not the scored run's %s; its throughput left out of the table",
                    path, timed, weights)
        return None
    return summ.throughput(perf)


def make_row(w, bs, data_name, backend=None, precision=None, machine=None, result_json=None):
    """The row of batch size ``bs``: its scores (``result_json``, else ``w.result_json(bs)``), its
    run's summary and its pure-inference throughput. What the summary does not say comes from the
    arguments, else the scores' provenance, else "n/a" (never guessed from a file name).
    """
    result = read_results(result_json or w.result_json(bs))
    run = summ.read_summary(w.summary(bs))
    prov = provenance(result)
    weights = summ.weights(run) or _text(prov.get("weights"))
    model = summ.model(run) or _text(prov.get("model"))
    return {
        "run": w.run,
        "batchsize": bs,
        "data": data_name,
        "mean_iou": float(result["mean_iou"]),
        "modelzoo_iou": None if result.get("modelzoo_iou") is None else float(result["modelzoo_iou"]),
        "mean_dice": float(result["mean_dice"]),
        "n_images": int(result["n_images"]),
        "n_below_0_5": int(result.get("n_below_0_5") or 0),
        "fps": summ.throughput(run),
        "perf_fps": pure_throughput(w, bs, weights),
        "wall_s": summ.wall_s(run),
        "compute_ms": summ.compute_ms(run),
        "backend": summ.backend(run) or backend or NA,
        "precision": summ.precision(run) or precision or NA,
        "machine": summ.machine(run) or machine or describe_machine(),
        "model": Path(model).name if model else None,
        "weights": weights,
        "per_image": [{"name": str(r["name"]), "iou": float(r["iou"]), "dice": float(r["dice"])}
                      for r in result["per_image"]],
    }


def _differs(row, mine):
    """Why another run's ``row`` is not this run's figures' match (other weights or another number
    of images than this run's rows ``mine``), or None."""
    weights = {r["weights"] for r in mine if r["weights"]}
    if row["weights"] and weights and row["weights"] not in weights:
        return f"made from other weights ({row['weights']})"
    images = {r["n_images"] for r in mine}
    if images and row["n_images"] not in images:
        return f"scored on {row['n_images']} images, this run on {', '.join(map(str, sorted(images)))}"
    return None


def guide_result(w, batchsizes=None):
    """``(batch size, path)`` of ``result.json`` (stage 6 by hand, the guide's ``--result=./result.txt``)
    in a folder without ``result_bs<B>.json``: its batch size as its provenance records it (the
    runner's summary, ``postprocess.run_provenance``), else the one of ``batchsizes`` when one is
    asked for; None without a ``result.json``."""
    path = w.result_json()
    if not path.is_file():
        return None
    bs = provenance(read_results(path)).get("batchsize")
    if not (isinstance(bs, int) and bs > 0):
        if batchsizes is None or len(set(batchsizes)) != 1:
            raise UserError(f"{path}: records no batch size (scored without the runner's summary beside its "
                            f"outputs); give its batch size with --batchsizes B")
        bs = batchsizes[0]
    return bs, path


def collect_rows(work, data_name, batchsizes=None, backend=None, precision=None, machine=None, run=""):
    """One row (:func:`make_row`) per run and batch size of ``batchsizes`` (None: every scored batch
    size) that has both its scores and its run's summary: the plain names' run first, then the others
    by name. A batch size of ``run`` without them is left out with a warning, and so is another run's
    row of other weights or another number of images; no row at all is a :class:`UserError`.
    """
    w = Workdir(work, run)
    if not w.root.is_dir():
        raise UserError(f"{w.root}: work folder not found")
    found, guide = w.scored_runs(), None
    if not found:
        guide = guide_result(w, batchsizes)
        found = [(run, guide[0])] if guide else []
    if not found:
        raise UserError(f"{w.root}: no {w.result_json('<B>').name} or {w.result_json().name} files (score a run "
                        f"first: postprocess_unet_pth.py --result={w.result_txt()}, or scripts/run_all.sh)")
    scored = [bs for name, bs in found if name == run]
    wanted = scored if batchsizes is None else sorted(set(batchsizes))
    rows = []
    for bs in wanted:
        if bs not in scored:
            log.warning("batch size %d: no %s in %s, not in the report", bs, w.result_json(bs).name, w.root)
        elif not w.summary(bs).is_file():
            log.warning("%s: no run summary %s beside it, batch size %d not in the report",
                        w.result_json(bs), w.summary(bs), bs)
        else:
            rows.append(make_row(w, bs, data_name, backend, precision, machine, guide and guide[1]))
    mine = list(rows)
    for name, bs in found:  # the other runs kept in the folder: other backends and precisions
        other = Workdir(work, name)
        if name == run or (batchsizes is not None and bs not in wanted) or not other.summary(bs).is_file():
            continue
        row = make_row(other, bs, data_name, machine=machine)
        why = _differs(row, mine)
        if why:
            log.warning("%s: %s, not in the report", other.result_json(bs), why)
        else:
            rows.append(row)
    rows.sort(key=lambda row: (row["run"], row["batchsize"]))
    if not rows:
        sizes = ", ".join(map(str, wanted))
        raise UserError(f"{w.root}: no batch size has both {w.result_json('<B>').name} and "
                        f"{w.summary('<B>').relative_to(w.root)} (batch sizes asked for: {sizes}; scored: "
                        f"{', '.join(map(str, scored))}; --all lists every scored batch size)")
    return rows


def check_weights(rows, work):
    """A :class:`UserError` unless every row that records its weights has the same."""
    groups = {}  # weights -> batch sizes, in row order
    for row in rows:
        if row["weights"]:
            groups.setdefault(row["weights"], []).append(row["batchsize"])
    if len(groups) > 1:
        parts = [f"{weights} (bs {', '.join(map(str, sizes))})" for weights, sizes in groups.items()]
        mixed = ", ".join(parts[:-1]) + " and " + parts[-1]  # "w4.pth sha256:... (bs 3) and w16.pth ... (bs 5)"
        raise UserError(f"{work}: the table would mix runs of different weights: {mixed}; report one run "
                        f"at a time (another workdir=, or --batchsizes with this run's batch sizes only)")
