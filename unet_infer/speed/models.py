"""The models a benchmark runs, made once per model under WORKDIR/models/<tag>/ and reused: the
stages it shares with the pipeline driver are the driver's own declarations (a model is remade
exactly when the driver would remake it); the random weights and calibration images are recorded
the same way."""

import hashlib
import importlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import backends, manifests
from ..workdir import Workdir

log = logging.getLogger(__name__)

RANDOM = "random"
RANDOM_SEED = 0
CALIB_IMAGES = 4
CALIB_SEED = 0


def slug(text, limit):
    """``text`` as a file name: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-").lower()[:limit].strip("-")


def model_workdir(workdir, weights, width, size):
    """The :class:`Workdir` of one model: WORKDIR/models/``random_w64_s572`` or ``<stem>_<path hash>_s572``."""
    if weights == RANDOM:
        return Workdir(Path(workdir) / "models" / f"random_w{width}_s{size}")
    digest = hashlib.sha1(str(Path(weights).resolve()).encode()).hexdigest()[:8]
    return Workdir(Path(workdir) / "models" / f"{slug(Path(weights).stem, 40) or 'weights'}_{digest}_s{size}")


def build(work, made, make):
    """Run ``make(made)`` unless the stage ``made`` of ``work`` is complete; True when it ran."""
    if made.complete(work):
        log.info("reusing %s", ", ".join(str(p) for p in made.outputs))
        return False
    made.forget(work)  # interrupted from here on: not complete
    make(made)
    made.record_done(work)
    return True


def make_random_weights(path, width, seed=RANDOM_SEED):
    """Save the state_dict of ``UNet(width=width)`` initialised with ``seed`` (the ModelZoo layout)."""
    import torch

    from ..formats import atomic_path
    from ..model import UNet

    torch.manual_seed(seed)
    model = UNet(width=width).eval()
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)
    log.info("wrote %s: random UNet of width %d (seed %d)", path, width, seed)
    return Path(path)


def describe_model(pth, weights, size):
    """``(heading words, sentence)`` of the model: width, weights, parameters, GFLOP per image."""
    from ..model import count_macs, count_parameters, load_unet

    model, layout = load_unet(pth)
    params = count_parameters(model) / 1e6
    gflop = 2 * count_macs(model, size) / 1e9
    source = f"random weights (seed {RANDOM_SEED})" if weights == RANDOM else Path(weights).name
    short = f"UNet w{layout.width} {layout.name}, {source}, {size}x{size}"
    gflop_text = f"{gflop:.1f}" if gflop >= 1 else f"{gflop:.3g}"
    long = (f"UNet of width {layout.width} ({layout.name} layout, {layout.n_classes} class"
            f"{'es' if layout.n_classes != 1 else ''}), {source}: {params:.1f} M parameters, "
            f"{gflop_text} GFLOP per {size}x{size} image")
    return short, long


def calibration_images(workdir, size):
    """WORKDIR/calib_s<S>: :data:`CALIB_IMAGES` generated images preprocessed at ``size`` (made once)."""
    from ..preprocess import preprocess_folder
    from ..sample import generate

    work = Workdir(workdir)
    sample, calib = work / "calib_sample", work / f"calib_s{size}"
    build(work.root, manifests.Made("calib_sample", outputs=(sample,),
                                    options={"images": CALIB_IMAGES, "seed": CALIB_SEED}),
          lambda made: generate(made.outputs[0], cars=1, seed=CALIB_SEED, views=CALIB_IMAGES))
    build(work.root, manifests.Made(f"calib_s{size}", inputs=(sample,), outputs=(calib,),
                                    options={"size": size}),
          lambda made: preprocess_folder(sample / "train", made.outputs[0], size))
    return calib


@dataclass
class Models:
    """The checkpoint, the model per config and batch size, the stages that ran (none: all reused)."""

    pth: Path
    paths: dict = field(default_factory=dict)  # (backend, precision, batchsize) -> model file
    built: list = field(default_factory=list)


def prepare_models(workdir, weights, width, size, configs, batchsizes, threads=None):
    """Make (or reuse) every model the ``(backend, precision)`` configs need at ``batchsizes``."""
    work = model_workdir(workdir, weights, width, size)
    work.root.mkdir(parents=True, exist_ok=True)
    models = Models(pth=work / f"UNet_w{width}_seed{RANDOM_SEED}.pth" if weights == RANDOM else Path(weights))
    pth = models.pth

    def step(made, make):
        if build(work.root, made, make):
            models.built.append(made.record)

    def declared(stage, **values):  # the driver's declaration of the stage, with this model's values
        return manifests.made_from(stage, work.root, {"weights": pth, "size": size, **values})

    if weights == RANDOM:
        step(manifests.Made("weights", outputs=(pth,), options={"width": width, "seed": RANDOM_SEED}),
             lambda made: make_random_weights(made.outputs[0], width))
    classes = [(backends.get_backend(name), precision) for name, precision in configs]
    if any(cls.source == "onnx" for cls, _ in classes):
        from ..export import pth_to_onnx
        from ..simplify import simplify
        step(declared("export"), lambda made: pth_to_onnx(made.weights, made.outputs[0], size))
        step(declared("simplify"), lambda made: simplify(made.inputs[0], made.outputs[0], size))
    for cls in dict.fromkeys(cls for cls, precision in classes if precision in cls.quantized):
        calib = calibration_images(workdir, size)  # every image of it (CALIB_IMAGES): the folder says how many
        step(declared("quantize", backend=cls.name, calib=calib),
             lambda made, cls=cls: importlib.import_module(cls.quantizer).quantize_model(
                 *made.inputs, made.outputs[0], n_calib=CALIB_IMAGES, size=size, threads=threads))
    compiled = set()  # a model two precisions share (openvino fp32 and bf16: one IR) is made once
    for cls, precision in classes:
        for bs in batchsizes:
            model = work.model(cls, precision, bs, pth)
            if cls.source == "onnx" and model not in compiled:
                compiled.add(model)
                step(declared("compile", backend=cls.name, precision=precision, bs=bs),
                     lambda made, cls=cls, bs=bs: cls.compile(made.inputs[0], made.outputs[0], bs, threads=threads,
                                                              size=size, check=False))
            models.paths[cls.name, precision, bs] = model
    return models
