"""What each stage of the pipeline is made from and what it makes, declared once (:data:`STAGES`),
and the record a finished stage leaves: ``WORK/.stages/<record>.json``, its manifest.

A stage is complete when the manifest it recorded when it finished equals the manifest of what it
would be made from now: every input file's name, size and modification time (a folder: each of
its files; paths resolved, so a symlink to the same data is the same data), the content hash of
the weights, and the options that change its output. Any difference re-runs the stage; a stage's
outputs are the next stage's inputs, so the stages after it re-run too.

The driver asks through ``python3 -m unet_infer.stages check|done|forget STAGE --value key=value ...``
(the same values for every stage: the declaration picks its record, paths and options from them);
the speed tables build the stages they share with it from the same declarations (:func:`made_from`).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import backends
from .cli import UserError
from .formats import atomic_write_text
from .weights import weights_id
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


def _path(work, stage):
    if not stage or "/" in stage or stage.startswith("."):
        raise UserError(f"{stage!r} is not a stage name")
    return Workdir(work).stages / f"{stage}.json"


# ---- the stages: what each is made from and what it makes, declared once ----------------------

@dataclass(frozen=True)
class Stage:
    """One stage as its record describes it; an output is recorded as an input too, so that a stage
    whose outputs were changed or removed runs again."""

    record: str  # WORK/.stages/<record>.json, a template of the values; {run_}: "<run>_" or nothing
    inputs: tuple = ()  # names of PATHS
    outputs: tuple = ()
    options: tuple = ()  # the values that change its output (one not given: "", the command's default)
    weights: bool = False  # made from the weights' content
    recipe: bool = False  # the INT8 recipe's options that depend on this machine (quantize.recipe_options) too


STAGES = {
    "sample": Stage("sample", options=("cars", "seed"), outputs=("sample",)),
    "preprocess": Stage("preprocess", inputs=("images",), options=("size",), outputs=("prep",)),
    "export": Stage("export", weights=True, options=("size",), outputs=("onnx",)),
    "simplify": Stage("simplify", inputs=("onnx",), options=("size",), outputs=("simplified",)),
    "quantize": Stage("quantize_{backend}", inputs=("simplified", "calib"), options=("size",),
                      outputs=("quantized",), recipe=True),
    "compile": Stage("compile_{backend}_{precision}_bs{bs}", inputs=("compile_from",), options=("size", "chip"),
                     outputs=("model",)),
    "infer": Stage("infer_{run_}bs{bs}", inputs=("model", "prep"),
                   options=("backend", "precision", "size", "device"), outputs=("outputs", "summary")),
    "score": Stage("score_{run_}bs{bs}", inputs=("outputs", "masks"), options=("size",), outputs=("result_txt",)),
    "stream": Stage("stream_{run_}bs{bs}", inputs=("model", "images", "masks"),
                    options=("backend", "precision", "size"), outputs=("result_txt", "summary")),
    "cluster": Stage("cluster_{run_}bs{bs}", inputs=("model", "images", "masks"),
                     options=("backend", "precision", "size", "actors", "gpus_per_actor"),
                     outputs=("result_txt", "summary")),
    "perf": Stage("perf_{run_}bs{bs}", inputs=("model",),
                  options=("backend", "precision", "size", "loop", "threads", "device"), outputs=("perf_summary",)),
}


def _data(folder):
    """The path of a Carvana-format folder of the data (``data.IMAGE_DIR`` or ``MASK_DIR``)."""
    def path(w, v):
        from . import data  # only here: it imports Pillow, and the driver's check stays quick
        return Path(v["data"]) / getattr(data, folder)
    return path


def _cls(v):
    return backends.get_backend(v["backend"])


# a stage's paths by name: from the work folder (``w``, a Workdir) and the values (``v``; a missing
# one is a KeyError, which made_from reports)
PATHS = {
    "sample": lambda w, v: w.sample,
    "images": _data("IMAGE_DIR"),
    "masks": _data("MASK_DIR"),
    "calib": lambda w, v: Path(v["calib"]),
    "prep": lambda w, v: w.prep,
    "onnx": lambda w, v: w.onnx,
    "simplified": lambda w, v: w.simplified,
    "quantized": lambda w, v: w.quantized(_cls(v)),
    "compile_from": lambda w, v: w.model_source(_cls(v), v["precision"]),
    "model": lambda w, v: w.model(_cls(v), v["precision"], int(v["bs"]), v["weights"]),
    "outputs": lambda w, v: w.outputs(int(v["bs"])),
    "summary": lambda w, v: w.summary(int(v["bs"])),
    "perf_summary": lambda w, v: w.perf_summary(int(v["bs"])),
    "result_txt": lambda w, v: w.result_txt(int(v["bs"])),
}


@dataclass(frozen=True)
class Made:
    """One stage of one work folder, as :func:`made_from` declares it: its record's name, the paths
    it is made from and makes, the weights whose content it is made from, and its options."""

    record: str
    inputs: tuple = ()
    outputs: tuple = ()
    weights: object = None
    options: dict = field(default_factory=dict)

    def manifest(self):
        """Its paths' fingerprints (resolved), the weights' content hash and its options."""
        return {"version": MANIFEST_VERSION,
                "inputs": {str(Path(p).resolve()): fingerprint(p) for p in (*self.inputs, *self.outputs)},
                "weights": weights_id(self.weights) if self.weights else None, "options": dict(self.options)}

    def complete(self, work):
        """True when its record says it finished from exactly what it is made from now."""
        try:
            recorded = json.loads(_path(work, self.record).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return recorded == json.loads(json.dumps(self.manifest()))

    def record_done(self, work):
        """Mark it complete, made from what it is made from now: written last, after all its outputs."""
        path = _path(work, self.record)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.manifest(), indent=1, sort_keys=True) + "\n")

    def forget(self, work):
        """Mark it incomplete."""
        _path(work, self.record).unlink(missing_ok=True)


def made_from(name, work, values):
    """The :class:`Made` of stage ``name`` in ``work`` for these ``values`` (the driver's options and
    what else the stage's paths need, e.g. ``bs``, ``calib``, ``run``; recorded as text)."""
    if name not in STAGES:
        raise UserError(f"{name!r} is not a stage; the stages are {', '.join(STAGES)}")
    stage, values = STAGES[name], {k: str(v) for k, v in values.items()}
    w = Workdir(work, values.get("run", ""))
    options = {key: values.get(key, "") for key in stage.options}
    if stage.recipe:
        from .quantize import recipe_options
        options.update({key: str(value) for key, value in recipe_options().items()})
    try:
        record = stage.record.format(**values, run_=w.prefix)
        inputs = tuple(PATHS[p](w, values) for p in stage.inputs)
        outputs = tuple(PATHS[p](w, values) for p in stage.outputs)
        weights = values["weights"] if stage.weights else None
    except KeyError as exc:
        raise UserError(f"stage {name} needs the value {exc.args[0]}= (--value {exc.args[0]}=...)") from None
    return Made(record, inputs, outputs, weights, options)
