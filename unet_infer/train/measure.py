"""Scoring a model as the pipeline scores (logit > 0, IoU per image, mean over images): the
per-epoch validation and the final measuring of other folders."""

import copy
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..formats import DEFAULT_SIZE
from ..metrics import iou
from ..model import build_from_state_dict, read_state_dict
from ..progress import progress
from .data import find_pairs, load_pairs

log = logging.getLogger(__name__)


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def _ort_predictor(model, size, tmpdir):
    """ONNX Runtime on an export of ``model``: about twice PyTorch's CPU inference speed here."""
    from ..export import INPUT_NAME, OUTPUT_NAME, export_model

    ort = _onnxruntime()
    path = Path(tmpdir) / "eval.onnx"
    shadow = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    export_model(shadow, path, size)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda xb: session.run([OUTPUT_NAME], {INPUT_NAME: xb})[0]


def evaluate(model, x, y, device="cpu", batch=4, engine="auto", desc=None):
    """Mean IoU of the car class over full-size images (logit > 0), as the pipeline scores them.

    ``engine``: ``torch``, ``onnxruntime`` (CPU; the model exported at this size) or ``auto``
    (onnxruntime on the CPU when it is installed, else torch).
    """
    if engine == "auto":
        engine = "onnxruntime" if str(device) == "cpu" and _onnxruntime() is not None else "torch"
    was_training = model.training
    model.eval()
    scores = []
    try:
        with tempfile.TemporaryDirectory(prefix="unet-eval-") as tmpdir:
            if engine == "onnxruntime":
                predict = _ort_predictor(model, x.shape[-1], tmpdir)
            else:
                def predict(xb):
                    with torch.inference_mode():
                        return model(torch.from_numpy(xb).to(device)).float().cpu().numpy()
            steps = range(0, len(x), batch)
            for start in progress(steps, desc=desc, unit="batch") if desc else steps:
                xb = x[start:start + batch].astype(np.float32) / np.float32(255)
                pred = predict(xb)[:, 0] > 0
                scores += [iou(p, lab == 1) for p, lab in zip(pred, y[start:start + batch])]
    finally:
        model.train(was_training)
    return float(np.mean(scores))


def native_bf16():
    """True when this CPU computes bf16 in hardware (AMX or AVX-512 BF16); else autocast is slow."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def measure(model_path, data_dir, size=DEFAULT_SIZE, upscale=None, workers=None, engine="auto", device="cpu"):
    """Mean IoU of a checkpoint on a Carvana-format folder, scored as the pipeline scores.

    ``upscale`` = (W, H): every image is first resized to W x H (bicubic) and its mask (nearest),
    then both go through the pipeline's own resize to ``size``.
    """
    model, _ = build_from_state_dict(read_state_dict(model_path), source=str(model_path))
    model = model.to(device)
    pairs = find_pairs(data_dir)
    name = Path(data_dir).name + (f" upscaled to {upscale[0]}x{upscale[1]}" if upscale else "")
    x, y = load_pairs(pairs, size, workers, upscale=upscale, desc=f"load {name}")
    start = time.monotonic()
    score = evaluate(model, x, y, device, engine=engine, desc=f"score {name}")
    log.info("%s: mean IoU %.4f over %d images (%.0f s)", name, score, len(x), time.monotonic() - start)
    return {"folder": Path(data_dir).name, "images": len(x), "upscaled_to": list(upscale) if upscale else None,
            "mean_iou": score}
