"""Stage 7: the report of a run: summary table, per-image scores, overlays, IoU histogram.

    python3 -m unet_infer.report --work work --data work/sample --batchsizes 8
    python3 -m unet_infer.report --work . --data ./carvana --batchsizes 8      (the guide's layout)

(scripts/run_all.sh runs it last, adding --backend, --precision, --size and --run.) The table lists
the batch sizes that have both their scores (result_bs<B>.json; in the guide's layout, ./result.json
of stage 6, of the batch size it records) and their scored run's ais_bench summary, with the
pure-inference (--loop) run's throughput where that run left its summary: the figure to quote. The
results of other backends and precisions kept in the same work folder are rows too.

It writes WORK/report/:
  summary.md          one row per run and batch size: IoU over all images, the ModelZoo IoU (images
                      with IoU >= 0.5 only), Dice, images, images/s (pure inference, and the scored
                      run's compute only), the scored run's wall time, backend, precision, model,
                      weights, machine
  per_image.csv       name,iou,dice per image (6 decimals) and a final mean row
  iou_hist.png        histogram of the per-image IoU (800 x 500)
  overlays/           worst_<k>_<stem>.png and best_<k>_<stem>.png (4 each at most): the input
                      image at S x S, the predicted car in cyan, the label's outline in red
  fps_vs_batch.png    images/s against batch size, when the table has 2 or more batch sizes

images/s: 1000 x batch size / mean compute time of one batch (ms), as ais_bench reports it. Backend
and precision come from each run's summary, else --backend/--precision, else "n/a"; never from a
file name.
"""

import csv
import io
import logging
from pathlib import Path

import numpy as np

from . import cli
from . import summary as summ
from .backends import names as backend_names, precisions as all_precisions
from .cli import UserError
from .data import IMAGE_DIR, MASK_DIR
from .figures import plot_fps_vs_batch, plot_iou_hist, plural, write_overlays
from .formats import DEFAULT_SIZE, atomic_write_text
from .machine import describe_machine, today
from .progress import set_quiet
from .results import MODELZOO_MIN_IOU, provenance, read_results
from .workdir import Workdir

log = logging.getLogger(__name__)

NA = "n/a"
SCORED_FPS = "images/s (scored run, compute only)"  # not images / wall s: the wall time beside it has the files
COLUMNS = ("Batch Size", "Data set", "IoU (all images)", f"IoU (ModelZoo: images >= {MODELZOO_MIN_IOU})",
           "Dice", "Images", "images/s (pure inference)", SCORED_FPS, "Wall s (scored run)",
           "Backend", "Precision", "Model", "Weights", "Machine")
THROUGHPUT_NOTE = ("images/s = 1000 x batch size / mean compute time of one batch (ms), as ais_bench "
                   "reports it: the model's compute only; host time (reading files, pre- and "
                   "postprocessing, copies to and from the device) is not counted. \"pure inference\" is "
                   "the timing run (`--loop`, no files), the figure to quote; \"scored run, compute only\" "
                   "is the model's compute in the run whose outputs were scored, while its wall time covers "
                   "the whole run, files included (images / wall time is lower).")


def make_row(w, bs, data_name, backend=None, precision=None, machine=None, result_json=None):
    """The row of batch size ``bs`` of the run ``w`` (scores from ``result_json``, else its own); what the
    summary does not say comes from the arguments, else the scores' provenance, else "n/a"."""
    result = read_results(result_json or w.result_json(bs))
    run = summ.read_summary(w.summary(bs))
    prov = provenance(result)
    weights = summ.weights(run) or prov.get("weights")
    model = summ.model(run) or prov.get("model")
    perf_path, perf_fps = w.perf_summary(bs), None  # the pure-inference run's images/s
    if perf_path.is_file():
        perf = summ.read_summary(perf_path)
        timed = summ.weights(perf)
        if weights and timed and timed != weights:  # a stale timing
            log.warning("%s: timed weights %s, not the scored run's %s; its throughput left out of the table",
                        perf_path, timed, weights)
        else:
            perf_fps = summ.throughput(perf)
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
        "perf_fps": perf_fps,
        "wall_s": summ.wall_s(run),
        "backend": summ.backend(run) or backend or NA,
        "precision": summ.precision(run) or precision or NA,
        "machine": summ.machine(run) or machine or describe_machine(),
        "model": Path(model).name if model else None,
        "weights": weights,
        "per_image": [{"name": str(r["name"]), "iou": float(r["iou"]), "dice": float(r["dice"])}
                      for r in result["per_image"]],
    }


def collect_rows(work, data_name, batchsizes=None, backend=None, precision=None, machine=None, run=""):
    """One row per run and batch size of ``batchsizes`` (None: every scored one) with both its scores
    and its summary, the plain names' run first; what is left out is warned about; no row, or rows
    of different weights, are a :class:`UserError`."""
    w = Workdir(work, run)
    if not w.root.is_dir():
        raise UserError(f"{w.root}: work folder not found")
    found, guide = w.scored_runs(), None
    if not found and w.result_json().is_file():  # the guide's (stage 6 by hand), of the batch size it records
        guide = w.result_json()
        bs = provenance(read_results(guide)).get("batchsize")
        if not (isinstance(bs, int) and bs > 0):
            if batchsizes is None or len(set(batchsizes)) != 1:
                raise UserError(f"{guide}: records no batch size (scored without the runner's summary beside its "
                                f"outputs); give its batch size with --batchsizes B")
            bs = batchsizes[0]
        found = [(run, bs)]
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
            rows.append(make_row(w, bs, data_name, backend, precision, machine, guide))
    weights, images = {r["weights"] for r in rows if r["weights"]}, {r["n_images"] for r in rows}  # this run's
    for name, bs in found:  # the other runs kept in the folder: other backends and precisions
        other = Workdir(work, name)
        if name == run or (batchsizes is not None and bs not in wanted) or not other.summary(bs).is_file():
            continue
        row = make_row(other, bs, data_name, machine=machine)
        if row["weights"] and weights and row["weights"] not in weights:
            log.warning("%s: made from other weights (%s), not in the report", other.result_json(bs), row["weights"])
        elif images and row["n_images"] not in images:
            log.warning("%s: scored on %d images, this run on %s, not in the report", other.result_json(bs),
                        row["n_images"], ", ".join(map(str, sorted(images))))
        else:
            rows.append(row)
    rows.sort(key=lambda row: (row["run"], row["batchsize"]))
    if not rows:
        sizes = ", ".join(map(str, wanted))
        raise UserError(f"{w.root}: no batch size has both {w.result_json('<B>').name} and "
                        f"{w.summary('<B>').relative_to(w.root)} (batch sizes asked for: {sizes}; scored: "
                        f"{', '.join(map(str, scored))}; --all lists every scored batch size)")
    groups = {}  # weights -> batch sizes, in row order
    for row in rows:
        if row["weights"]:
            groups.setdefault(row["weights"], []).append(row["batchsize"])
    if len(groups) > 1:
        parts = [f"{weights} (bs {', '.join(map(str, sizes))})" for weights, sizes in groups.items()]
        mixed = ", ".join(parts[:-1]) + " and " + parts[-1]  # "w4.pth sha256:... (bs 3) and w16.pth ... (bs 5)"
        raise UserError(f"{work}: the table would mix runs of different weights: {mixed}; report one run "
                        f"at a time (another workdir=, or --batchsizes with this run's batch sizes only)")
    return rows


def _number(value, fmt):
    return NA if value is None else format(value, fmt)


def _cells(row):
    """The cells of one table row, formatted (in the order of :data:`COLUMNS`)."""
    cells = [row["batchsize"], row["data"], f"{row['mean_iou']:.6f}", _number(row["modelzoo_iou"], ".6f"),
             f"{row['mean_dice']:.6f}", row["n_images"], _number(row["perf_fps"], ".2f"), f"{row['fps']:.2f}",
             _number(row["wall_s"], ".1f"), row["backend"], row["precision"], row["model"] or NA,
             row["weights"] or NA, row["machine"]]
    return [str(cell).replace("|", "\\|").replace("\n", " ") for cell in cells]


def _which(row, rows):
    """``"bs 8"``, and its backend and precision where the rows are of several runs."""
    several = len({r["run"] for r in rows}) > 1
    return f"bs {row['batchsize']}" + (f" {row['backend']} {row['precision']}" if several else "")


def write_summary_md(rows, path, per_image_row):
    """summary.md: the table, then notes; ``per_image_row``: the row whose scores per_image.csv holds."""
    lines = ["# UNet on Carvana: accuracy and throughput", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += ["", f"Generated {today()} by `python3 -m unet_infer.report`.", "",
              f"- {THROUGHPUT_NOTE}",
              f"- IoU of the car class, mean over all images; the ModelZoo figure leaves out the "
              f"\"difficult\" images whose IoU is below {MODELZOO_MIN_IOU}."]
    below = [f"{_which(r, rows)}: {r['n_below_0_5']}" for r in rows if r["n_below_0_5"]]
    if below:
        lines.append(f"- Images below {MODELZOO_MIN_IOU}: " + ", ".join(below) + ".")
    lines.append(f"- Per-image scores ({_which(per_image_row, rows)}): `per_image.csv`; histogram: `iou_hist.png`; "
                 f"worst and best images: `overlays/`.")
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_per_image_csv(records, path):
    """``name,iou,dice`` per record (6 decimals), then ``mean,<mean iou>,<mean dice>``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["name", "iou", "dice"])
    for record in records:
        writer.writerow([record["name"], f"{record['iou']:.6f}", f"{record['dice']:.6f}"])
    ious = np.array([r["iou"] for r in records], dtype=np.float64)
    dices = np.array([r["dice"] for r in records], dtype=np.float64)
    writer.writerow(["mean", f"{ious.mean():.6f}", f"{dices.mean():.6f}"])
    atomic_write_text(path, buf.getvalue())


def main(argv=None):
    """Write WORK/report/ (see the module notes)."""
    parser = cli.parser("python3 -m unet_infer.report", __doc__)
    add = parser.add_argument
    add("--work", required=True, help="work folder of the run (holds its scores and result/)")
    add("--data", required=True, help="Carvana-format data folder (train/, train_masks/); its name is the "
                                      "table's data set")
    add("--batchsizes", type=cli.int_list, default="8",
        help="batch sizes of this run, comma list: the table's rows; the first one with results gives "
             "per_image.csv and the overlays")
    add("--all", dest="all_batchsizes", action="store_true",
        help="list every batch size scored in --work, not only those of --batchsizes")
    add("--backend", default=None, choices=backend_names(),
        help="backend, for a run whose summary does not say (without it: n/a)")
    add("--precision", default=None, choices=all_precisions(),
        help="precision, for a run whose summary does not say (without it: n/a)")
    add("--run", default="", help="the run of --work the report is for, by the name in its files "
                                  "(result_<run>_bs8.json; scripts/run_all.sh gives its own; without it: the "
                                  "plain names' result_bs8.json): its rows take --backend/--precision where "
                                  "their summary does not say, and give per_image.csv and the overlays")
    add("--size", type=cli.int_at_least(16), default=DEFAULT_SIZE, help="model output height and width")
    add("--machine", default=None, help="text of the Machine column, for a run whose summary does not say "
                                        "(without it: this machine's CPU model and core count)")
    cli.add_quiet(parser)
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    work, data = Path(args.work), Path(args.data)
    if not data.is_dir():
        raise UserError(f"{data}: data folder not found (it must hold {IMAGE_DIR}/ and {MASK_DIR}/)")
    rows = collect_rows(work, data.resolve().name or str(data), None if args.all_batchsizes else args.batchsizes,
                        args.backend, args.precision, args.machine, args.run)
    mine = [row for row in rows if row["run"] == args.run] or rows
    by_bs = {row["batchsize"]: row for row in mine}
    chosen = by_bs[next((bs for bs in args.batchsizes if bs in by_bs), mine[0]["batchsize"])]
    records = chosen["per_image"]

    out = Workdir(work).report
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cli.os_error(out, exc, "create the report folder") from None
    write_per_image_csv(records, out / "per_image.csv")
    plot_iou_hist([r["iou"] for r in records], out / "iou_hist.png")
    if len(rows) > 1:
        pure = all(row["perf_fps"] is not None for row in rows)  # pure-inference images/s, else the scored runs'
        points = [dict(row, fps=row["perf_fps"] if pure else row["fps"]) for row in rows]
        plot_fps_vs_batch(points, out / "fps_vs_batch.png",
                          title=f"UNet throughput against batch size ({'pure inference' if pure else 'scored runs'})")
    overlays = write_overlays(records, Workdir(work, chosen["run"]), data, chosen["batchsize"], args.size,
                              out / "overlays")
    write_summary_md(rows, out / "summary.md", chosen)
    print(f"report: {out / 'summary.md'} ({plural(len(rows), 'row')}, {plural(len(overlays), 'overlay')})")


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
