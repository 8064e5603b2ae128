"""Stage 6: score the model's outputs against the Carvana masks.

The guide's command:

    python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks --result=./result.txt

(the same as ``python3 -m unet_infer.postprocess ...``). Each --output/<stem>.bin (float32
logits, 1 or 2 x size x size; <stem>_0.bin is accepted when json_parse was not run) is compared
with --label/<stem>_mask.gif, or <stem>_mask.png where there is no GIF (resized with NEAREST to
size x size when needed). Files other than .bin are skipped with a warning.

Writes --result (a header, then "name IoU Dice" per image, natural order) and a JSON of the
same stem beside it (means, the ModelZoo figure, per-image values, and what the run was made
from: the model, weights, backend, precision and batch size from the runner's summary beside
--output, e.g. result/bs8_summary.json, and the folders scored), and prints one line:
the mean IoU over all images, then the guide's figure, which leaves out images with IoU < 0.5.
"""

import logging
from pathlib import Path

from . import cli
from .cli import UserError
from .data import find_files, load_label, mask_not_found, mask_path
from .formats import DEFAULT_SIZE, bin_nbytes, natural_key, read_bin
from .metrics import iou_dice, logits_to_mask
from .parallel import parallel_map
from .preprocess import add_size_and_workers
from .progress import set_quiet
from .results import check_writable, iou_line, write_results
from .workdir import run_paths

PROG = "python3 -m unet_infer.postprocess"
CLASSES = (1, 2)
log = logging.getLogger(__name__)


def output_classes(path, size=DEFAULT_SIZE):
    """1 or 2, from the size of the output file (1 x S x S: car where logit > 0; 2 x S x S, milesial
    master: car where class 1 wins the argmax); any other size is a :class:`UserError`."""
    nbytes = Path(path).stat().st_size
    for classes in CLASSES:
        if nbytes == bin_nbytes(classes, size):
            return classes
    expected = " or ".join(f"{bin_nbytes(c, size)} ({c} x {size} x {size} float32)" for c in CLASSES)
    raise UserError(f"{path}: {nbytes} bytes, expected {expected}")


def check_logits(logits, batchsize, size):
    """A model output batch must be N x 1 (or 2) x S x S."""
    if (logits.ndim != 4 or logits.shape[1] not in CLASSES
            or (logits.shape[0], *logits.shape[2:]) != (batchsize, size, size)):
        raise UserError(f"the model's output has shape {logits.shape}, expected "
                        f"{batchsize} x 1 (or 2) x {size} x {size}")


def _score_job(job):
    """Worker: (name, output file, mask file, size) -> ``{"name", "iou", "dice"}``."""
    name, out_path, label_path, size = job
    logits = read_bin(out_path, shape=(output_classes(out_path, size), size, size))
    iou, dice = iou_dice(logits_to_mask(logits), load_label(label_path, size))
    return {"name": name, "iou": iou, "dice": dice}


def find_outputs(output_dir, label_dir, size=DEFAULT_SIZE):
    """``[(name, output path, mask path), ...]`` in natural order (other files than ``.bin`` skipped with
    a warning); no ``.bin`` file, a missing mask or an output of the wrong size is a :class:`UserError`."""
    outputs = find_files(output_dir, (".bin",), "output")
    label_dir = Path(label_dir)
    if not label_dir.is_dir():
        raise UserError(f"{label_dir}: label folder not found")
    if not outputs:
        raise UserError(f"{output_dir}: no .bin output files")
    present = {path.name for path in outputs}
    found, stems = [], {}
    for path in outputs:
        stem, label = path.stem, mask_path(label_dir, path.stem)
        if not label.is_file() and stem.endswith("_0") and stem[:-2] + path.suffix not in present:
            if mask_path(label_dir, stem[:-2]).is_file():
                stem, label = stem[:-2], mask_path(label_dir, stem[:-2])
        if not label.is_file():
            raise UserError(mask_not_found([(label, path)]))
        if stem in stems:
            raise UserError(f"{stems[stem]} and {path} are both outputs for {stem}")
        stems[stem] = path
        output_classes(path, size)
        found.append((stem, path, label))
    return found


def run_provenance(output_dir, label_dir, size=DEFAULT_SIZE):
    """``result.json``'s ``provenance``: what the runner's summary beside the outputs records (None
    without one), the summary, the outputs and the masks (resolved paths), the size."""
    from . import summary as summ
    outputs = Path(output_dir).resolve()
    path = run_paths(outputs.parent, outputs.name)[1]
    run = {}
    if path.is_file():
        try:
            run = summ.read_summary(path)
        except UserError as exc:
            log.warning("%s; the result records no model", exc)
    return {"model": summ.model(run), "weights": summ.weights(run), "backend": summ.backend(run),
            "precision": summ.precision(run), "batchsize": summ.batchsize(run) if run else None,
            "summary": str(path) if run else None, "outputs": str(outputs),
            "masks": str(Path(label_dir).resolve()), "size": size}


def score_folder(output_dir, label_dir, size=DEFAULT_SIZE, workers=None):
    """Score every output in ``output_dir``; ``[{"name", "iou", "dice"}, ...]`` in natural order."""
    jobs = [(name, str(out), str(label), size)
            for name, out, label in find_outputs(output_dir, label_dir, size)]
    records = list(parallel_map(_score_job, jobs, workers, desc="postprocess", unit="img"))
    return sorted(records, key=lambda record: natural_key(record["name"]))


def main(argv=None, prog=PROG):
    parser = cli.parser(prog, __doc__)
    add = parser.add_argument
    add("--output", required=True, help="folder of the model's output .bin files")
    add("--label", required=True, help="folder of the <stem>_mask.gif (or <stem>_mask.png) masks")
    add("--result", required=True, help="per-image result text file; the .json of the same stem goes beside it")
    add_size_and_workers(parser, "model output height and width")
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    check_writable(args.result, inputs=[args.output, args.label])  # before the scoring, not after
    records = score_folder(args.output, args.label, size=args.size, workers=args.workers)
    print(iou_line(write_results(records, args.result, run_provenance(args.output, args.label, args.size))))


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
