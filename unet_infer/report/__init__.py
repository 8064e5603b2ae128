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

import sys
from pathlib import Path

from .. import cli
from ..backends import names as backend_names, precisions as all_precisions
from ..cli import UserError, run_cli
from ..data import IMAGE_DIR, MASK_DIR
from ..formats import DEFAULT_SIZE
from ..progress import set_quiet
from ..results import N_EXTREMES, select_extremes
from ..workdir import Workdir
from .overlays import LABEL_COLOUR, edge_mask, load_prediction, make_overlay, write_overlays
from .plots import plot_fps_vs_batch, plot_iou_hist
from .rows import check_weights, collect_rows
from .tables import COLUMNS, plural, summary_markdown, write_per_image_csv, write_summary_md

__all__ = ["COLUMNS", "LABEL_COLOUR", "N_EXTREMES", "build_parser", "build_report", "check_weights",
           "collect_rows", "edge_mask", "load_prediction", "main", "make_overlay", "plot_fps_vs_batch",
           "plot_iou_hist", "select_extremes", "summary_markdown", "write_overlays", "write_per_image_csv",
           "write_summary_md"]



def build_report(work, data, batchsizes, backend=None, precision=None, size=DEFAULT_SIZE, machine=None,
                 all_batchsizes=False, allow_mixed=False, run=""):
    """Write WORK/report/ (see the module notes); return what was written.

    Returns ``{"summary_md", "per_image_csv", "iou_hist", "fps_plot" (or None), "overlays",
    "rows", "batchsize", "warning"}``; ``batchsize`` is the one whose per-image scores and
    predictions were used, ``warning`` the mixed-weights warning (None unless ``allow_mixed``).
    """
    work, data = Path(work), Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: data folder not found (it must hold {IMAGE_DIR}/ and {MASK_DIR}/)")
    rows = collect_rows(work, data.resolve().name or str(data), None if all_batchsizes else batchsizes,
                        backend, precision, machine, run)
    warning = check_weights(rows, work, allow_mixed)
    mine = [row for row in rows if row["run"] == run] or rows
    by_bs = {row["batchsize"]: row for row in mine}
    chosen = next((bs for bs in batchsizes if bs in by_bs), mine[0]["batchsize"])
    records = by_bs[chosen]["per_image"]

    out = Workdir(work).report
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cli.os_error(out, exc, "create the report folder") from None
    per_image_csv = write_per_image_csv(records, out / "per_image.csv")
    iou_hist = plot_iou_hist([r["iou"] for r in records], out / "iou_hist.png")
    fps_plot = None
    if len(rows) > 1:
        pure = all(row["perf_fps"] is not None for row in rows)  # pure-inference images/s, else the scored runs'
        points = [dict(row, fps=row["perf_fps"] if pure else row["fps"]) for row in rows]
        which = "pure inference" if pure else "scored runs"
        fps_plot = plot_fps_vs_batch(points, out / "fps_vs_batch.png",
                                     title=f"UNet throughput against batch size ({which})")
    overlays = write_overlays(records, Workdir(work, by_bs[chosen]["run"]), data, chosen, size, out / "overlays")
    summary_md = write_summary_md(rows, out / "summary.md", warning=warning, per_image_row=by_bs[chosen])
    return {"summary_md": summary_md, "per_image_csv": per_image_csv, "iou_hist": iou_hist,
            "fps_plot": fps_plot, "overlays": overlays, "rows": rows, "batchsize": chosen, "warning": warning}


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
    add(*cli.flag("allow_mixed"), dest="allow_mixed", action="store_true",
        help="list rows of different weights anyway, under a warning (without it: an error)")
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
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    report = build_report(args.work, args.data, args.batchsizes, args.backend, args.precision, size=args.size,
                          machine=args.machine, all_batchsizes=args.all_batchsizes, allow_mixed=args.allow_mixed,
                          run=args.run)
    print(f"report: {report['summary_md']} ({plural(len(report['rows']), 'row')}, "
          f"{plural(len(report['overlays']), 'overlay')})")


if __name__ == "__main__":
    sys.exit(run_cli(main))
