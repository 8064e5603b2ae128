"""When a pipeline stage is complete, and the driver's other questions, asked by scripts/run_all.sh.

A stage is complete when the manifest it recorded when it finished (``WORK/.stages/<stage>.json``)
equals the manifest of what it would be made from now: every input file's name, size and
modification time (a folder: each of its files; paths resolved, so a symlink to the same data is
the same data), the content hash of the weights, and the options that change its output. Any
difference re-runs the stage; a stage's outputs are the next stage's inputs, so the stages after
it re-run too. The benchmark asks the same question (``complete``/``record``) of its own models.

    python3 -m unet_infer.stages plan --work W --weights PTH --backend onnxruntime --precision fp32 --bs 1,8
    python3 -m unet_infer.stages plan --work W --weights PTH --backend auto --bs 8     (BACKEND= says which)
    python3 -m unet_infer.stages check preprocess --work W --input DATA/train --option size=572
    python3 -m unet_infer.stages done preprocess --work W --input DATA/train --option size=572
    python3 -m unet_infer.stages preflight --work W --data DATA --size 572
    python3 -m unet_infer.stages prune-prep --work W --data DATA
    python3 -m unet_infer.stages clear-run --work W --name bs8
    python3 -m unet_infer.stages clear-sample --work W
    python3 -m unet_infer.stages result --work W --bs 8 --backend onnxruntime --precision fp32
"""

import json
import os
import shlex
import textwrap
from pathlib import Path

from . import backends, cli
from .cli import UserError
from .formats import atomic_write_text
from .weights import BUNDLED_WEIGHTS, weights_id
from .quantize import recipe_options
from .workdir import Workdir

MANIFEST_VERSION = 1


# ---- manifests ---------------------------------------------------------------------------------

def _stat(path):
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def fingerprint(path):
    """What a path holds now: a file's size and mtime, a folder's files (one level down and their
    sub-folders' files), or None when it does not exist."""
    path = Path(path)
    if path.is_file():
        return _stat(path)
    if not path.is_dir():
        return None
    entries = {}
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue  # temporary files of a stage in progress
        if child.is_file():
            entries[child.name] = _stat(child)
        elif child.is_dir():
            entries[child.name + "/"] = {c.name: _stat(c) for c in sorted(child.iterdir())
                                         if c.is_file() and not c.name.startswith(".")}
    return entries


def manifest(inputs=(), weights=None, options=None):
    """The manifest of a stage: its inputs (resolved paths), the weights' content hash, its options."""
    found = {str(Path(p).resolve()): fingerprint(p) for p in inputs}
    return {"version": MANIFEST_VERSION, "inputs": found,
            "weights": weights_id(weights) if weights else None, "options": dict(options or {})}


def _path(work, stage):
    if not stage or "/" in stage or stage.startswith("."):
        raise UserError(f"{stage!r} is not a stage name")
    return Workdir(work).stages / f"{stage}.json"


def complete(work, stage, wanted):
    """True when ``stage`` finished from exactly ``wanted`` (a :func:`manifest`)."""
    path = _path(work, stage)
    try:
        return json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(wanted))
    except (OSError, ValueError):
        return False


def record(work, stage, made_from):
    """Mark ``stage`` complete, made from ``made_from``; written last, after all its outputs."""
    path = _path(work, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(made_from, indent=1, sort_keys=True) + "\n")


def forget(work, *stages):
    for stage in stages:
        _path(work, stage).unlink(missing_ok=True)


# ---- the driver's questions ---------------------------------------------------------------------

FLOWS = {"files": None, "stream": "stream=1", "cluster": "cluster=ray (each Ray actor)"}  # --flow: how the model is run


def plan(work, weights, backend, precision, batchsizes, flow="files"):
    """``{NAME: value}`` for the driver: the backend (``auto``: ``backends.default_backend``, the
    fastest for this machine and precision), its precision, the weights (default: the bundled
    ones), what to build and every path. ``flow``: one of :data:`FLOWS`; the stream and the
    cluster run the model in this process, which a backend run by another program cannot
    (``backends.in_process``)."""
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
    w = Workdir(work)
    values = {"WEIGHTS": weights, "BACKEND": backend, "PRECISION": precision, "SOURCE": cls.source,
              "QUANTIZE": int(precision in cls.quantized), "ONNX": w.onnx, "SIMPLIFIED": w.simplified,
              "PREP": w.prep, "SAMPLE": w.sample, "RESULTS": w.results, "REPORT": w.report,
              "COMPILE_FROM": w.model_source(cls, precision) if cls.source == "onnx" else ""}
    if precision in cls.quantized:
        values["QUANTIZED"] = w.quantized(cls)
        values["WEIGHT_BITS"] = recipe_options()["weight_bits"]
    for bs in batchsizes:
        values[f"MODEL_{bs}"] = w.model(cls, precision, bs, weights)
        for key, path in (("OUTPUTS", w.outputs(bs)), ("SUMMARY", w.summary(bs)), ("LOG", w.run_log(bs)),
                          ("PERF_SUMMARY", w.perf_summary(bs)), ("RESULT_TXT", w.result_txt(bs))):
            values[f"{key}_{bs}"] = path
        values[f"PERF_NAME_{bs}"] = w.perf_name(bs)
    return values


# the Python packages the driver's stages import, by what the backend builds from
STAGE_TOOLS = {"onnx": (("export", "torch"), ("export", "onnx"), ("export's check", "onnxruntime"),
                        ("simplify", "onnxsim")),
               "pth": ()}
QUANTIZE_TOOLS = {"unet_infer.quantize.openvino": ("nncf",), "unet_infer.quantize.onnxruntime": ()}


def check_tools(cls, precision):
    """Before any work: every package the planned stages import is installed (a :class:`UserError`
    naming the missing ones, and the stage that needs each, otherwise)."""
    import importlib.util
    needed = list(STAGE_TOOLS.get(cls.source, ()))
    if precision in cls.quantized:
        needed += [("quantize", pkg) for pkg in QUANTIZE_TOOLS.get(cls.quantizer, ())]
    missing = [f"{pkg} (stage {stage})" for stage, pkg in needed if importlib.util.find_spec(pkg) is None]
    if missing:
        raise UserError(f"not installed: {', '.join(missing)}; run `pip install -r requirements.txt`")


def preflight(work, data, size, labels=True):
    """Checks before any expensive work: the data pairs up, the size is valid, WORK is writable."""
    if size < 16:
        raise UserError(f"size={size}: the UNet needs at least 16 x 16 (four 2x poolings)")
    from .data import pair_carvana
    pairs = pair_carvana(data, require_masks=labels)
    work = Path(work)
    probe = work / f".probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise cli.os_error(work, exc, "write in the work folder") from None
    return len(pairs)


def prune_prep(work, data):
    """Delete the ``.bin`` files of ``WORK/prep_bin`` whose image is no longer in ``DATA/train``
    (the driver's own files: it made them from images that are gone); returns their names."""
    prep = Workdir(work).prep
    if not prep.is_dir():
        return []
    from .data import pair_carvana
    wanted = {stem for stem, _, _ in pair_carvana(data, require_masks=False)}
    stale = [p for p in prep.iterdir() if p.is_file() and p.suffix == ".bin" and p.stem not in wanted]
    for path in stale:
        path.unlink()
    return sorted(p.name for p in stale)


def clear_sample(work):
    """Remove the generated sample's images and masks (the driver's own files) before another is
    generated, so that two samples never mix; any other file there is refused, nothing removed."""
    from .data import IMAGE_DIR, MASK_DIR
    sample = Workdir(work).sample
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
    return len(files)


def clear_run(work, name):
    """Remove an earlier (outdated or interrupted) run ``name`` of the driver's: ``result/<name>``'s
    output files and ``result/<name>_summary.json``. Anything else in that folder was not written
    by the runner: then nothing is removed and the run is refused."""
    results = Workdir(work).results
    folder, summary = results / name, results / f"{name}_summary.json"
    if not folder.exists() and not summary.exists():
        return None
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
    return len(files)


def result_lines(work, batchsizes, backend, precision, labels=True):
    """The driver's closing lines: per batch size, the IoU of the scored run, the pure-inference
    throughput, and the wall time of the run on the images (apart: it includes reading and writing
    files), called the scored run, or with ``labels=False`` the inference run, not scored."""
    from . import summary as summ
    from .results import modelzoo_text, read_results
    w, lines = Workdir(work), []
    for bs in batchsizes:
        parts = []
        if labels:
            result = read_results(w.result_json(bs))
            parts.append(f"IoU {result['mean_iou']:.6f} (ModelZoo figure {modelzoo_text(result)}, "
                         f"{result['n_images']} image{'s' if result['n_images'] != 1 else ''})")
        if w.perf_summary(bs).is_file():
            perf = summ.read_summary(w.perf_summary(bs))
            count = summ.timed_runs(perf)
            parts.append(f"throughput {summ.throughput(perf):.2f} images/s (pure inference, bs {bs}, "
                         f"loop {count}, {summ.backend(perf) or backend} {summ.precision(perf) or precision})")
        run = summ.read_summary(w.summary(bs)) if w.summary(bs).is_file() else None
        if run is not None and summ.wall_s(run) is not None:
            n = summ.image_count(run)
            parts.append(f"{'scored' if labels else 'inference'} run {summ.wall_s(run):.1f} s wall for {n} "
                         f"image{'s' if n != 1 else ''}" + ("" if labels else ", not scored"))
        lines.append(", ".join(parts))
    return lines


# ---- the command line ---------------------------------------------------------------------------

def _manifest_args(parser):
    parser.add_argument("stage", help="the stage's name, e.g. preprocess or infer_bs8 (its record: "
                                      "WORK/.stages/<stage>.json)")
    _work(parser)
    parser.add_argument("--input", action="append", default=[],
                        help="a file or folder the stage is made from (each file's name, size and time); repeatable")
    parser.add_argument("--weights", help="the checkpoint it is made from (its content hash is recorded)")
    parser.add_argument("--option", action="append", default=[],
                        help="key=value: an option that changes its output; repeatable")


def _work(parser):
    parser.add_argument("--work", required=True, help="the driver's work folder (scripts/run_all.sh workdir=)")


def _sub(sub, name, summary, example):
    """A subcommand: ``summary`` in the main help; it and the example ``python3 -m unet_infer.stages
    <example>`` in its own."""
    text = textwrap.fill(summary[0].upper() + summary[1:] + ".", 100)
    return sub.add_parser(name, help=summary, description=f"{text}\n\n    python3 -m unet_infer.stages {example}",
                          formatter_class=cli.HelpFormatter, allow_abbrev=False)


def _options(pairs):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--option {pair!r}: expected key=value")
        out[key] = value
    return out


def build_parser():
    parser = cli.parser("python3 -m unet_infer.stages", __doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bs_help = "batch size, or a comma list of them (e.g. 1,8)"
    p = _sub(sub, "plan", "the driver's paths and choices, as shell assignments",
             "plan --work W --backend auto --bs 8")
    _work(p)
    p.add_argument("--weights", help="the checkpoint (without it: the bundled one)")
    p.add_argument("--backend", required=True, help="auto (the fastest here) or a backend's name "
                                                    "(python3 -m unet_infer.backends lists them)")
    p.add_argument("--precision", default=None, help="what the backend computes in (without it: its first)")
    p.add_argument("--bs", type=cli.int_list_type(), required=True, help=bs_help)
    p.add_argument("--flow", choices=list(FLOWS), default="files",
                   help="how the driver runs the model: the runner on files, stream=1 or cluster=ray (these two "
                        "run it in this process: a backend run by another program is refused)")
    _manifest_args(_sub(sub, "check", "is the stage complete? Exit status 0: yes, made from exactly these "
                        "inputs, weights and options; 1: no, and its record is dropped",
                        "check preprocess --work W --input DATA/train --option size=572"))
    _manifest_args(_sub(sub, "done", "mark the stage complete, made from these inputs, weights and options "
                        "(after its outputs are written)", "done preprocess --work W --input DATA/train --option size=572"))
    p = _sub(sub, "forget", "mark stages incomplete", "forget score_bs8 --work W")
    p.add_argument("stages", nargs="+", help="stage names")
    _work(p)
    p = _sub(sub, "preflight", "check the data, size and work folder before any work",
             "preflight --work W --data DATA --size 572")
    _work(p)
    p.add_argument("--data", required=True, help="Carvana-format folder: train/ and train_masks/")
    p.add_argument("--size", type=int, required=True, help="network input size (at least 16)")
    p.add_argument("--no-labels", dest="labels", action="store_false", help="no masks needed (labels=none)")
    p = _sub(sub, "prune-prep", "remove prep_bin files of images no longer in the data",
             "prune-prep --work W --data DATA")
    _work(p)
    p.add_argument("--data", required=True, help="Carvana-format folder whose train/ images are kept")
    _work(_sub(sub, "clear-sample", "remove an earlier generated sample", "clear-sample --work W"))
    p = _sub(sub, "clear-run", "remove an earlier run's outputs and summary", "clear-run --work W --name bs8")
    _work(p)
    p.add_argument("--name", required=True, help="the run: WORK/result/<name>/ and <name>_summary.json")
    p = _sub(sub, "result", "the closing lines", "result --work W --bs 8 --backend onnxruntime --precision fp32")
    _work(p)
    p.add_argument("--bs", type=cli.int_list_type(), required=True, help=bs_help)
    p.add_argument("--backend", required=True, help="the backend used (shown where a summary does not name it)")
    p.add_argument("--precision", required=True, help="its precision (shown where a summary does not name it)")
    p.add_argument("--no-labels", dest="labels", action="store_false",
                   help="the run was not scored (labels=none): no IoU; its run on the images is called the "
                        "inference run")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "check":  # the driver asks this before every stage: stay quick
        made_from = manifest(args.input, args.weights, _options(args.option))
        if complete(args.work, args.stage, made_from):
            return 0
        forget(args.work, args.stage)  # not complete: it runs again, and is recorded when it ends
        return 1
    if args.command == "plan":
        for key, value in plan(args.work, args.weights, args.backend, args.precision, args.bs, args.flow).items():
            print(f"{key}={shlex.quote(str(value))}")
    elif args.command == "done":
        record(args.work, args.stage, manifest(args.input, args.weights, _options(args.option)))
    elif args.command == "forget":
        forget(args.work, *args.stages)
    elif args.command == "preflight":
        from .data import IMAGE_DIR, MASK_DIR
        n = preflight(args.work, args.data, args.size, args.labels)
        print(f"{n} image{'s' if n != 1 else ''} in {Path(args.data) / IMAGE_DIR}"
              + (f", each with its mask in {Path(args.data) / MASK_DIR}" if args.labels else ""))
    elif args.command == "prune-prep":
        stale = prune_prep(args.work, args.data)
        if stale:
            print(f"removed {len(stale)} .bin file(s) of images no longer in {args.data}: {', '.join(stale[:5])}"
                  + (" ..." if len(stale) > 5 else ""))
    elif args.command == "clear-sample":
        n = clear_sample(args.work)
        if n:
            print(f"removed the earlier generated sample ({n} files) from {Workdir(args.work).sample}")
    elif args.command == "clear-run":
        n = clear_run(args.work, args.name)
        if n is not None:
                print(f"removed the earlier run {args.name} ({n} output file{'s' if n != 1 else ''}): made from "
                  f"other inputs, or interrupted")
    elif args.command == "result":
        for line in result_lines(args.work, args.bs, args.backend, args.precision, args.labels):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli.run_cli(main))
