"""The driver's questions, asked by scripts/run_all.sh: whether a stage is complete (its declaration
and record, picked from the values the driver gives every stage: --value key=value), its checks and
clean-ups, and its plan (the backend's choices and every path, printed by python3 -m unet_infer.driver
plan). Several backends' and precisions' results live side by side in one work folder, each run's
named by the plan's RUN_TAG, which the driver gives every stage as the value run=.

    python3 -m unet_infer.stages check preprocess --work W --value data=DATA --value size=572   (0: complete)
    python3 -m unet_infer.stages done preprocess --work W --value data=DATA --value size=572
    python3 -m unet_infer.stages result --work W --bs 8 --backend onnxruntime --precision fp32
"""

import json
import re
import shutil
import textwrap
from pathlib import Path

from . import backends, cli
from .cli import UserError
from .data import IMAGE_DIR, MASK_DIR, pair_carvana
from .formats import atomic_path
from .manifests import STAGES, made_from
from .weights import BUNDLED_WEIGHTS
from .workdir import Workdir, run_paths

# ---- the driver's questions ---------------------------------------------------------------------

FLOWS = {"files": None, "stream": "stream=1", "cluster": "cluster=ray (each Ray actor)"}  # how the model is run


def plan(work, weights, backend, precision, batchsizes, flow="files"):
    """``{NAME: value}`` for the driver: the backend (``auto``: the fastest here for the precision), its
    precision, the weights, what to build, every path; a backend in this process for a :data:`FLOWS` flow."""
    weights = Path(weights) if weights else BUNDLED_WEIGHTS
    if not weights.is_file():
        raise UserError(f"{weights}: checkpoint not found")
    weights = weights.resolve()
    if backend == backends.AUTO:
        backend = backends.default_backend(precision)
    cls = backends.get_backend(backend)
    if FLOWS[flow]:
        backends.in_process(backend, FLOWS[flow])
    precision = cls.check_precision(precision)
    backends.usable_backend(backend)
    check_tools(cls, precision)
    w = Workdir(work, run_tag(work, backend, precision))
    values = {"WEIGHTS": weights, "BACKEND": backend, "PRECISION": precision, "RUN_TAG": w.run, "SOURCE": cls.source,
              "QUANTIZE": int(precision in cls.quantized), "ONNX": w.onnx, "SIMPLIFIED": w.simplified,
              "PREP": w.prep, "SAMPLE": w.sample, "RESULTS": w.results, "REPORT": w.report,
              "COMPILE_FROM": w.model_source(cls, precision) if cls.source == "onnx" else ""}
    if precision in cls.quantized:
        values["QUANTIZED"] = w.quantized(cls)
    for bs in batchsizes:
        for key, value in (("MODEL", w.model(cls, precision, bs, weights)), ("OUTPUTS", w.outputs(bs)),
                           ("SUMMARY", w.summary(bs)), ("LOG", w.run_log(bs)), ("PERF_SUMMARY", w.perf_summary(bs)),
                           ("RESULT_TXT", w.result_txt(bs)), ("RUN_NAME", w.run_name(bs)),
                           ("PERF_NAME", w.perf_name(bs))):
            values[f"{key}_{bs}"] = value
    return values


RUN_STAGES = ("infer", "stream", "cluster", "perf")  # their records say which backend and precision ran


def run_tag(work, backend, precision):
    """The name of this backend and precision's results in ``work``: "" (the plain names, ``result/bs8``)
    when they are free or already this run's, else ``<backend>_<precision>``."""
    tag, stages, names = f"{backend}_{precision}", Workdir(work).stages, "|".join(RUN_STAGES)
    plain = re.compile(rf"(?:{names})_bs[0-9]+\.json")
    tagged = re.compile(rf"(?:{names})_{re.escape(tag)}_bs[0-9]+\.json")
    owners, own_names = set(), False
    for path in stages.iterdir() if stages.is_dir() else ():
        own_names = own_names or bool(tagged.fullmatch(path.name))
        if plain.fullmatch(path.name):
            try:
                options = json.loads(path.read_text(encoding="utf-8"))["options"]
                owners.add((options["backend"], options["precision"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a record of another form: it re-runs, and says nothing of its backend
    if (backend, precision) in owners:
        return ""
    return tag if owners or own_names else ""


# the Python packages the driver's stages import for a backend that builds from the ONNX model, and
# those of an INT8 recipe beyond its backend's
ONNX_TOOLS = (("export", "torch"), ("export", "onnx"), ("export's check", "onnxruntime"), ("simplify", "onnxsim"))
QUANTIZE_TOOLS = {"unet_infer.quantize.openvino": ("nncf",)}


def check_tools(cls, precision):
    """Before any work: every package the planned stages import is installed, else a :class:`UserError`."""
    import importlib.util
    needed = list(ONNX_TOOLS) if cls.source == "onnx" else []
    if precision in cls.quantized:
        needed += [("quantize", pkg) for pkg in QUANTIZE_TOOLS.get(cls.quantizer, ())]
    missing = [f"{pkg} (stage {stage})" for stage, pkg in needed if importlib.util.find_spec(pkg) is None]
    if missing:
        raise UserError(f"not installed: {', '.join(missing)}; run `pip install -r requirements.txt`")


def check(args):
    """Whether the stage is complete (the driver asks before every stage: stay quick)."""
    made = _made(args)
    print(made.record)
    if made.complete(args.work):
        return 0
    recorded = (Workdir(args.work).stages / f"{made.record}.json").exists()
    made.forget(args.work)  # not complete: it runs again, and is recorded when it ends
    return 3 if recorded else 1


def preflight(args):
    """Before any expensive work: the data pairs up (the work folder: the lock)."""
    n = len(pair_carvana(args.data, require_masks=args.labels))
    print(f"{n} image{'s' if n != 1 else ''} in {Path(args.data) / IMAGE_DIR}"
          + (f", each with its mask in {Path(args.data) / MASK_DIR}" if args.labels else ""))


def prune_prep(args):
    """Delete (and name) the ``.bin`` files of ``WORK/prep_bin`` whose image is no longer in ``DATA/train``."""
    prep = Workdir(args.work).prep
    if not prep.is_dir():
        return
    wanted = {stem for stem, _, _ in pair_carvana(args.data, require_masks=False)}
    stale = sorted(p.name for p in prep.iterdir() if p.is_file() and p.suffix == ".bin" and p.stem not in wanted)
    for name in stale:
        (prep / name).unlink()
    if stale:
        print(f"removed {len(stale)} .bin file(s) of images no longer in {args.data}: {', '.join(stale[:5])}"
              + (" ..." if len(stale) > 5 else ""))


def all_converted(args):
    """Every image of ``DATA/train`` has its ``.bin`` in ``WORK/prep_bin`` (unreadable=stop)."""
    prep = Workdir(args.work).prep
    missing = [image for stem, image, _ in pair_carvana(args.data, require_masks=False)
               if not (prep / f"{stem}.bin").is_file()]
    if missing:
        raise UserError(f"{len(missing)} image(s) not converted (unreadable, left out by a run with unreadable=skip): "
                        f"{', '.join(map(str, missing[:5]))}{' ...' * (len(missing) > 5)}; fix or remove them, or "
                        f"pass unreadable=skip to go on without them")


def clear_sample(args):
    """Remove the generated sample's images and masks before another is generated, so that two samples
    never mix; any other file there is refused, nothing removed."""
    sample = Workdir(args.work).sample
    files = []
    for sub, suffix in ((IMAGE_DIR, ".jpg"), (MASK_DIR, "_mask.gif")):
        folder = sample / sub
        if folder.is_dir():
            for path in folder.iterdir():
                if not (path.is_file() and path.name.endswith(suffix)):
                    raise UserError(f"{path}: not a file of the generated sample; move it out of {sample}")
                files.append(path)
    for path in files:
        path.unlink()
    if files:
        print(f"removed the earlier generated sample ({len(files)} files) from {sample}")


def clear_run(args):
    """Remove an earlier (outdated or unfinished) run: ``result/<name>``'s output files and its summary;
    anything else in that folder is refused, nothing removed."""
    folder, summary = run_paths(Workdir(args.work).results, args.name)
    if not folder.exists() and not summary.exists():
        return
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise UserError(f"{folder}: not a folder of the runner's outputs; move it away")
    files = list(folder.iterdir()) if folder.is_dir() else []
    foreign = [p for p in files if not (p.is_file() and p.suffix in (".bin", ".npy", ".txt"))]
    if foreign:
        raise UserError(f"{foreign[0]}: not an output of the runner, in the folder of an earlier run that "
                        f"must be replaced; move it out of {folder}")
    for path in files:
        path.unlink()
    if folder.is_dir():
        folder.rmdir()
    summary.unlink(missing_ok=True)
    why = ("timed again (retime=1)" if args.retime else "made from other inputs (or its files were changed since)"
           if args.changed else "left unfinished by a run that stopped before its end")
    print(f"removed the earlier run {args.name} ({len(files)} output file{'s' if len(files) != 1 else ''}): {why}")


def last_result(args):
    """Copy the last batch size's ``result_bs<B>.txt`` and ``.json`` to ``result.txt`` and ``.json``
    (``--run``'s: ``result_<run>_bs<B>.txt`` to ``result_<run>.txt``), atomically."""
    w, last = Workdir(args.work, args.run), args.bs[-1]
    for src, dst in ((w.result_txt(last), w.result_txt()), (w.result_json(last), w.result_json())):
        try:
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
        except OSError as exc:
            raise cli.os_error(src, exc, f"copy it to {dst}") from None


def result_lines(work, batchsizes, backend, precision, labels=True, run=""):
    """The driver's closing lines: per batch size, the IoU, the pure-inference throughput, and the wall
    time of the scored run (with ``labels=False``: the inference run, not scored)."""
    from . import summary as summ
    from .results import modelzoo_text, read_results
    w, lines = Workdir(work, run), []
    for bs in batchsizes:
        parts = []
        if labels:
            result = read_results(w.result_json(bs))
            parts.append(f"IoU {result['mean_iou']:.6f} (ModelZoo figure {modelzoo_text(result)}, "
                         f"{result['n_images']} image{'s' if result['n_images'] != 1 else ''})")
        if w.perf_summary(bs).is_file():
            perf = summ.read_summary(w.perf_summary(bs))
            parts.append(f"throughput {summ.throughput(perf):.2f} images/s (pure inference, bs {bs}, loop "
                         f"{perf['NPU_compute_time']['count']}, {summ.backend(perf) or backend} "
                         f"{summ.precision(perf) or precision})")
        run = summ.read_summary(w.summary(bs)) if w.summary(bs).is_file() else None
        if run is not None and summ.wall_s(run) is not None:
            n = summ.image_count(run)
            parts.append(f"{'scored' if labels else 'inference'} run {summ.wall_s(run):.1f} s wall for {n} "
                         f"image{'s' if n != 1 else ''}" + ("" if labels else ", not scored"))
        lines.append(", ".join(parts))
    return lines


# ---- the command line ---------------------------------------------------------------------------

def _made(args):
    """The stage's declaration, made from the driver's ``--value key=value`` pairs."""
    values = {}
    for pair in args.value:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--value {pair!r}: expected key=value")
        values[key] = value
    return made_from(args.stage, args.work, values)


def _sub(sub, name, summary, example, run, work=True):
    """A subcommand that calls ``run(args)``, its ``summary`` and ``example`` in its help."""
    text = textwrap.fill(summary[0].upper() + summary[1:] + ".", 100)
    parser = sub.add_parser(name, help=summary, description=f"{text}\n\n    python3 -m unet_infer.stages {example}",
                            formatter_class=cli.HelpFormatter, allow_abbrev=False)
    parser.set_defaults(do=run)
    if work:
        parser.add_argument("--work", required=True, help="the driver's work folder (scripts/run_all.sh workdir=)")
    return parser


def _stage_args(parser):
    parser.add_argument("stage", choices=list(STAGES), metavar="STAGE",
                        help=f"the stage: one of {', '.join(STAGES)} (its record: WORK/.stages/<record>.json, "
                             f"e.g. infer_bs8)")
    parser.add_argument("--value", action="append", default=[], metavar="KEY=VALUE",
                        help="one of the driver's values: its options (size=572, backend=..., precision=..., "
                             "weights=PTH, data=DIR, ...) and those of this stage (bs=8, calib=DIR); the stage's "
                             "declaration picks its paths and options from them; repeatable")


def main(argv=None):
    parser = cli.parser("python3 -m unet_infer.stages", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bs_help = "batch size, or a comma list of them (e.g. 1,8)"
    run_help = "the run's name in the results' names (plan's RUN_TAG)"
    _stage_args(_sub(sub, "check", "is the stage complete? Prints its record's name; exit status 0: yes; 1: no "
                     "record (never run, or stopped before its end); 3: its record is of other inputs (or its "
                     "files changed since) and is dropped",
                     "check preprocess --work W --value data=DATA --value size=572", check))
    _stage_args(_sub(sub, "done", "mark the stage complete, made from what it is made from now (after its "
                     "outputs are written)", "done preprocess --work W --value data=DATA --value size=572",
                     lambda args: _made(args).record_done(args.work)))
    _stage_args(_sub(sub, "forget", "mark the stage incomplete", "forget score --work W --value bs=8",
                     lambda args: _made(args).forget(args.work)))
    p = _sub(sub, "preflight", "check the data before any work", "preflight --data DATA", preflight, work=False)
    p.add_argument("--data", required=True, help="Carvana-format folder: train/ and train_masks/")
    p.add_argument("--no-labels", dest="labels", action="store_false", help="no masks needed (labels=none)")
    p = _sub(sub, "prune-prep", "remove prep_bin files of images no longer in the data",
             "prune-prep --work W --data DATA", prune_prep)
    p.add_argument("--data", required=True, help="Carvana-format folder whose train/ images are kept")
    p = _sub(sub, "all-converted", "check that every image of DATA/train has its prep_bin file (unreadable=stop)",
             "all-converted --work W --data DATA", all_converted)
    p.add_argument("--data", required=True, help="Carvana-format folder")
    _sub(sub, "clear-sample", "remove an earlier generated sample", "clear-sample --work W", clear_sample)
    p = _sub(sub, "clear-run", "remove an earlier run's outputs and summary", "clear-run --work W --name bs8 --changed",
             clear_run)
    p.add_argument("--name", required=True, help="the run: WORK/result/<name>/ and <name>_summary.json")
    p.add_argument("--changed", action="store_true", help="say: made from other inputs (check's status 3; "
                                                          "without it: left unfinished)")
    p.add_argument("--retime", action="store_true", help="say: timed again, as asked (the driver's retime=1)")
    p = _sub(sub, "last-result", "copy the last batch size's result_bs<B>.txt and .json to result.txt and "
             "result.json", "last-result --work W --bs 1,8", last_result)
    p.add_argument("--bs", type=cli.int_list, required=True, help=bs_help + "; the last one's are copied")
    p.add_argument("--run", default="", help=run_help)
    p = _sub(sub, "result", "the closing lines", "result --work W --bs 8 --backend onnxruntime --precision fp32",
             lambda args: print(*result_lines(args.work, args.bs, args.backend, args.precision, args.labels,
                                              args.run), sep="\n"))
    p.add_argument("--bs", type=cli.int_list, required=True, help=bs_help)
    p.add_argument("--backend", required=True, help="the backend used (shown where a summary does not name it)")
    p.add_argument("--precision", required=True, help="its precision (shown where a summary does not name it)")
    p.add_argument("--no-labels", dest="labels", action="store_false",
                   help="the run was not scored (labels=none): no IoU, and its run is called the inference run")
    p.add_argument("--run", default="", help=run_help)
    args = parser.parse_args(argv)
    return args.do(args) or 0


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
