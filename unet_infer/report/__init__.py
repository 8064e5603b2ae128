"""Stage 7: the report of a run: summary table, per-image scores, overlays, IoU histogram.

    python3 -m unet_infer.report --work work --data work/sample --batchsizes 8
    python3 -m unet_infer.report --work . --data ./carvana --batchsizes 8      (the guide's layout)

(scripts/run_all.sh runs it last, adding --backend, --precision, --size and --run.) In the guide's
layout, scored by hand into ./result.txt (stage 6), the scores are ./result.json, of the batch size
it records. The table lists the batch sizes that have both their scores and their scored run's
ais_bench summary, and, where the pure-inference (``--loop``) run of that batch size left its
summary, that run's throughput: the figure to quote. The results of other backends and precisions
kept in the same work folder (``result_onnxruntime_int8_bs8.json`` and the like) are rows too.

It writes WORK/report/:
  summary.md          one row per run and batch size: IoU over all images, the ModelZoo IoU (images
                      with IoU >= 0.5 only), Dice, images, images/s (pure inference, and the
                      scored run's compute only), the scored run's wall time (files included),
                      backend, precision, model, weights, machine
  per_image.csv       name,iou,dice per image (6 decimals) and a final mean row
  iou_hist.png        histogram of the per-image IoU (800 x 500)
  overlays/           worst_<k>_<stem>.png and best_<k>_<stem>.png (4 each at most): the input
                      image at S x S, the predicted car in cyan, the label's outline in red
  fps_vs_batch.png    images/s against batch size, when the table has 2 or more batch sizes

images/s is ais_bench's throughput: 1000 x batch size / mean compute time of one batch (ms);
host time (reading files, pre- and postprocessing, copies) is not counted. Backend and
precision come from each run's summary where it records them, else from --backend/--precision,
else "n/a"; they are never guessed from a file name.
"""

import csv
import io
from pathlib import Path

import numpy as np

from .. import cli
from ..backends import names as backend_names, precisions as all_precisions
from ..cli import UserError
from ..data import IMAGE_DIR, MASK_DIR
from ..formats import DEFAULT_SIZE, atomic_write_text
from ..machine import today
from ..progress import set_quiet
from ..results import MODELZOO_MIN_IOU
from ..workdir import Workdir
from .overlays import write_overlays
from .plots import plot_fps_vs_batch, plot_iou_hist
from .rows import NA, check_weights, collect_rows

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


def plural(n, word):
    """``"1 row"``, ``"2 rows"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


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
    return Path(path)


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


def build_parser():
    parser = cli.parser("python3 -m unet_infer.report", __doc__)
    add = parser.add_argument
    add("--work", required=True, help="work folder of the run (holds its scores and result/)")
    add("--data", required=True, help="Carvana-format data folder (train/, train_masks/); its name is the "
                                      "table's data set")
    add("--batchsizes", type=cli.int_list_type(), default="8",
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
    return parser


def main(argv=None):
    """Write WORK/report/ (see the module notes)."""
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    work, data = Path(args.work), Path(args.data)
    if not data.is_dir():
        raise UserError(f"{data}: data folder not found (it must hold {IMAGE_DIR}/ and {MASK_DIR}/)")
    rows = collect_rows(work, data.resolve().name or str(data), None if args.all_batchsizes else args.batchsizes,
                        args.backend, args.precision, args.machine, args.run)
    check_weights(rows, work)
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
    summary_md = write_summary_md(rows, out / "summary.md", chosen)
    print(f"report: {summary_md} ({plural(len(rows), 'row')}, {plural(len(overlays), 'overlay')})")
