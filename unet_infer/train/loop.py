"""The training loop: loss, the per-epoch resumable checkpoint and the final plain state_dict; and
the scoring, as the pipeline scores (logit > 0, IoU per image, mean over images), of the per-epoch
validation and of the final measuring of other folders. On the CPU the model is scored through ONNX
Runtime (an export of it: about twice PyTorch's CPU inference speed here), on CUDA in PyTorch."""

import copy
import logging
import math
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..cli import UserError, first_line
from ..formats import DEFAULT_SIZE, atomic_path
from ..machine import cpu_flags
from ..metrics import iou_dice
from ..model import UNet, build_from_state_dict, count_parameters, load_unet, read_state_dict
from ..progress import progress
from .data import Augment, car_id, find_pairs, load_pairs, random_batch, split_by_car

log = logging.getLogger(__name__)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # where the trainer runs
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = "unet_infer.train/2"
PCT_START = 0.15  # share of the steps spent warming up (one-cycle schedule)
WEIGHT_DECAY = 1e-4  # AdamW's


def dice_loss(logits, target, eps=1.0):
    """1 - soft Dice of the car class, averaged over the batch."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1 - (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


# ---- checkpoints ----


def cpu_seconds():
    """CPU time of this process and its finished children (loading workers), all threads."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def save_checkpoint(path, model, optimiser, schedule, rng, epoch, history, config, seconds, cpu, ema, final=None):
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "optimiser": optimiser.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": rng.bit_generator.state,
        "history": history,
        "config": config,
        "train_seconds": float(seconds),
        "train_cpu_seconds": float(cpu),
    }
    if ema is not None:
        state["ema"] = {k: v.detach().cpu().contiguous() for k, v in ema.items()}
    if final is not None:  # the finished model, BatchNorm statistics recomputed, and how that went
        state["final"], state["bn_recomputed"] = final
    save_atomically(state, path)


def load_checkpoint(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to remove
        raise UserError(f"{path}: not a readable training checkpoint ({first_line(exc, 160)}); remove it to start "
                        f"again") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a training checkpoint of this version ({CHECKPOINT_FORMAT}); "
                        f"remove it to start again")
    return state


def save_atomically(obj, path):
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _same_weights(path, state):
    """True when the checkpoint file ``path`` holds exactly the tensors of ``state``."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - missing or unreadable: not the same
        return False
    return (isinstance(saved, dict) and saved.keys() == state.keys()
            and all(isinstance(saved[k], torch.Tensor) and saved[k].dtype == v.dtype and torch.equal(saved[k], v)
                    for k, v in state.items()))


# ---- the average of the weights and the BatchNorm statistics ----


def ema_update(ema, model, decay, step):
    """One step of the exponential moving average of every floating tensor of ``model`` (weights and
    BatchNorm buffers); the decay ramps up as (1 + step) / (10 + step) so early weights fade fast."""
    d = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                ema[k].copy_(v)


def with_weights(model, state):
    """A copy of ``model`` holding ``state`` (the averaged weights), in eval mode."""
    shadow = copy.deepcopy(model)
    shadow.load_state_dict(state)
    return shadow.eval()


def recompute_batchnorm(model, x, device, batch=4):
    """Re-estimate every BatchNorm's running statistics as the plain average over the clean whole
    images ``x`` (uint8, N x 3 x S x S): what the deployed model sees, not the augmented crops."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all the batches
    was_training = model.training
    model.train()
    with torch.no_grad():
        for start in progress(range(0, len(x), batch), desc="BatchNorm statistics", unit="batch"):
            model(torch.from_numpy(x[start:start + batch].astype(np.float32) / np.float32(255)).to(device))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.train(was_training)


# ---- training ----


def train(data_dir, out, *, width=16, epochs=12, steps_per_epoch=None, batch=8, crop=256, size=DEFAULT_SIZE,
          lr=2e-3, seed=0, workers=None, threads=None, init=None, holdout_cars=0, extra=(), extra_fraction=None,
          augment=None, checkpoint_dir=None, resume=False, ema=None, bn_images=0):
    """Train and save a state_dict at ``out``; returns ``history`` (per epoch), ``complete_before``
    (nothing trained: the checkpoint was finished), ``data``, ``config``, the seconds and, with
    ``bn_images``, ``bn_recomputed``. With ``ema``, the average is what is validated and saved (the
    raw weights' figure is ``holdout_iou_raw``)."""
    if crop > size:
        raise UserError(f"--crop {crop} is larger than --size {size}")
    augment = augment or Augment()
    if not 0 < augment.scale_min <= augment.scale_max:
        raise UserError(f"--scale {augment.scale_min} {augment.scale_max}: need 0 < MIN <= MAX")
    if resume and not checkpoint_dir:
        raise UserError("--resume needs --checkpoint-dir")
    if not Path(out).parent.is_dir():  # before the hours of training, not after
        raise UserError(f"{Path(out).parent}: output folder not found")
    if threads:
        torch.set_num_threads(threads)
    amp = DEVICE == "cuda" or bool({"amx_bf16", "avx512_bf16"} & cpu_flags())  # else bf16 autocast is slow
    memory_format = torch.channels_last if DEVICE == "cuda" else torch.contiguous_format
    started, cpu_started = time.monotonic(), cpu_seconds()

    ckpt_path = None
    if checkpoint_dir:
        checkpoint_dir = Path(checkpoint_dir)
        try:
            checkpoint_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{checkpoint_dir}: cannot create the checkpoint folder ({exc})") from None
        ckpt_path = checkpoint_dir / CHECKPOINT_NAME
        if ckpt_path.exists() and not resume:
            raise UserError(f"{ckpt_path} exists: pass --resume to continue that run, or remove it to start again")

    model = None
    if init:
        model, layout = build_from_state_dict(read_state_dict(init), source=str(init))
        if (layout.name, layout.n_channels, layout.n_classes) != ("modelzoo", 3, 1):
            raise UserError(f"{init}: --init needs a ModelZoo-layout UNet with 3 inputs and 1 class, "
                            f"found {layout.describe()}")
        width = layout.width  # the checkpoint's width wins

    # the data: --data (less the held-out cars) and the --extra folders
    pairs = find_pairs(data_dir)
    stems = [img.stem for img, _ in pairs]
    train_idx, hold_idx, held_cars = split_by_car(stems, holdout_cars, seed)
    extra_pairs = [p for folder in extra for p in find_pairs(folder)]
    data = {
        "data": {"folder": Path(data_dir).name, "images": len(pairs), "cars": len({car_id(s) for s in stems}),
                 "held_out_cars": len(held_cars), "held_out_images": len(hold_idx),
                 "training_images": len(train_idx)},
        "extra": [{"folder": Path(folder).name, "images": len(find_pairs(folder))} for folder in extra],
    }
    config = {
        "width": width, "epochs": epochs, "batch": batch, "crop": crop, "size": size, "lr": lr, "seed": seed,
        "holdout_cars": holdout_cars, "held_out": held_cars, "training_images": len(train_idx),
        "extra_images": len(extra_pairs), "extra_fraction": extra_fraction, "augment": asdict(augment),
        "pct_start": PCT_START, "weight_decay": WEIGHT_DECAY, "amp": amp,
        "init": Path(init).name if init else None,
    }
    if ema is not None or bn_images:  # older records have neither key
        config.update({"ema": ema, "bn_images": bn_images})

    state = load_checkpoint(ckpt_path) if ckpt_path and ckpt_path.exists() else None
    saved = state["config"] if state is not None else {}
    steps_per_epoch = (steps_per_epoch or saved.get("steps_per_epoch")
                       or max(1, math.ceil(len(train_idx) * (size / crop) ** 2 / batch / 2)))
    config["steps_per_epoch"] = steps_per_epoch
    if state is not None:
        diff = [f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in sorted(set(saved) | set(config))
                if saved.get(k) != config.get(k)]
        if diff:
            raise UserError(f"{ckpt_path} was made with other settings ({'; '.join(diff[:4])}): run it with its "
                            f"own settings, or use another --checkpoint-dir")
        if state["epoch"] >= epochs and (not bn_images or "final" in state):
            final = state.get("final") or state.get("ema") or state["model"]
            if not _same_weights(out, final):
                save_atomically(final, out)
            log.info("%s: the run is complete (%d of %d epochs): nothing to train; the model is %s",
                     ckpt_path, state["epoch"], epochs, out)
            return {"history": state["history"], "complete_before": True, "data": data, "config": config,
                    "train_seconds": state["train_seconds"], **state.get("bn_recomputed", {}),
                    "train_cpu_seconds": state.get("train_cpu_seconds", 0.0)}

    if model is None:  # (with --init and a checkpoint, the checkpoint's weights replace --init's below)
        torch.manual_seed(seed)
        model = UNet(3, 1, bilinear=False, width=width, bias=True)
    model = model.to(DEVICE, memory_format=memory_format)
    model.train()

    x, y = load_pairs([pairs[i] for i in train_idx], size, workers, desc="load train")
    hold = load_pairs([pairs[i] for i in hold_idx], size, workers, desc="load held-out") if hold_idx else None
    ex = load_pairs(extra_pairs, size, workers, desc="load extra") if extra_pairs else None
    if ex is not None and extra_fraction is None:
        x, y = np.concatenate([x, ex[0]]), np.concatenate([y, ex[1]])
        ex = None

    total = epochs * steps_per_epoch
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total, pct_start=PCT_START)
    rng = np.random.default_rng(seed)
    history, first_epoch, seconds, cpu = [], 1, 0.0, 0.0
    averaged = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                for k, v in model.state_dict().items()} if ema is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        if averaged is not None:
            averaged = {k: v.to(DEVICE) for k, v in state["ema"].items()}
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        history, first_epoch, seconds = list(state["history"]), state["epoch"] + 1, state["train_seconds"]
        cpu = state.get("train_cpu_seconds", 0.0)
        log.info("%s: resuming after epoch %d of %d", ckpt_path, state["epoch"], epochs)
    seconds += time.monotonic() - started  # finding and loading the data
    cpu += cpu_seconds() - cpu_started

    log.info("training UNet width %d (%.2f M parameters) on %d images%s, %d held out (%d cars), "
             "%dx%d crops of %dx%d, batch %d, %d steps x %d epochs, %s%s",
             width, count_parameters(model) / 1e6, len(x),
             f" + {len(ex[0])} extra at {extra_fraction:.0%}" if ex is not None else "",
             len(hold_idx), len(held_cars), crop, crop, size, size, batch, steps_per_epoch, epochs, DEVICE,
             ", bf16 autocast" if amp else ", fp32")
    for epoch in range(first_epoch, epochs + 1):
        start, cpu_start, losses = time.monotonic(), cpu_seconds(), []
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="step")
        for _ in bar:
            xb, yb = random_batch(x, y, batch, crop, rng, augment, ex, extra_fraction or 0.0)
            xb = xb.to(DEVICE, memory_format=memory_format)
            yb = yb.to(DEVICE)
            with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=amp):
                logits = model(xb).float()
            loss = F.binary_cross_entropy_with_logits(logits, yb) + dice_loss(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            if averaged is not None:
                ema_update(averaged, model, ema, schedule.last_epoch)
            losses.append(loss.item())
            bar.set_postfix_str(f"loss={np.mean(losses[-20:]):.4f}")
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": float(schedule.get_last_lr()[0])}
        train_time = time.monotonic() - start
        scored = with_weights(model, averaged) if averaged is not None else model
        if hold is not None:
            record["holdout_iou"] = evaluate(scored, *hold)
            if averaged is not None:
                record["holdout_iou_raw"] = evaluate(model, *hold)
        record["train_seconds"] = train_time
        record["seconds"] = time.monotonic() - start
        record["cpu_seconds"] = cpu_seconds() - cpu_start
        seconds += record["seconds"]
        cpu += record["cpu_seconds"]
        history.append(record)
        log.info("epoch %d/%d: loss %.4f%s (%.0f s training + %.0f s validation, %.0f CPU-s)", epoch, epochs,
                 record["loss"], f", held-out IoU {record['holdout_iou']:.4f}" if "holdout_iou" in record else "",
                 train_time, record["seconds"] - train_time, record["cpu_seconds"])
        if ckpt_path:
            save_checkpoint(ckpt_path, model, optimiser, schedule, rng, epoch, history, config, seconds, cpu,
                            averaged)
    final = with_weights(model, averaged) if averaged is not None else model.eval()
    extra_record = {}
    if bn_images:
        chosen = np.random.default_rng([seed, 0xB4]).permutation(len(x))[:bn_images]
        before = history[-1].get("holdout_iou") if history else None  # the last epoch scored these weights
        recompute_batchnorm(final, x[np.sort(chosen)], DEVICE)
        after = evaluate(final, *hold) if hold is not None else None
        extra_record["bn_recomputed"] = {"images": int(len(chosen)), "holdout_iou_before": before,
                                         "holdout_iou_after": after}
        log.info("BatchNorm statistics recomputed on %d clean training images%s", len(chosen),
                 f": held-out IoU {before:.4f} -> {after:.4f}" if hold is not None else "")
    final_state = {k: v.detach().cpu().contiguous() for k, v in final.state_dict().items()}
    final_state = {k: v.float() if v.is_floating_point() else v for k, v in final_state.items()}  # a plain fp32 file
    if bn_images and ckpt_path:
        save_checkpoint(ckpt_path, model, optimiser, schedule, rng, epochs, history, config, seconds, cpu,
                        averaged, (final_state, extra_record))
    save_atomically(final_state, out)
    log.info("wrote %s", out)
    return {"history": history, "complete_before": False, "data": data, "config": config,
            "train_seconds": seconds, "train_cpu_seconds": cpu, **extra_record}


# ---- scoring ----


def evaluate(model, x, y, batch=4, desc=None):
    """Mean IoU of the car class over the uint8 images ``x`` and 0/1 labels ``y`` (logit > 0)."""
    from ..backends.onnxruntime_backend import cpu_session
    from ..export import INPUT_NAME, OUTPUT_NAME, export_model
    was_training = model.training
    model.eval()
    scores = []
    with tempfile.TemporaryDirectory(prefix="unet-eval-") as tmpdir:
        if DEVICE == "cpu":  # the model is on the CPU, contiguous: exported as it is
            export_model(model, Path(tmpdir) / "eval.onnx", x.shape[-1])
            session = cpu_session(Path(tmpdir) / "eval.onnx", torch.get_num_threads())
        steps = range(0, len(x), batch)
        for start in progress(steps, desc=desc, unit="batch") if desc else steps:
            xb = x[start:start + batch].astype(np.float32) / np.float32(255)
            if DEVICE == "cpu":
                logits = session.run([OUTPUT_NAME], {INPUT_NAME: xb})[0]
            else:
                with torch.inference_mode():
                    logits = model(torch.from_numpy(xb).to(DEVICE)).float().cpu().numpy()
            scores += [iou_dice(p, lab == 1)[0] for p, lab in zip(logits[:, 0] > 0, y[start:start + batch])]
    model.train(was_training)
    return float(np.mean(scores))


def measure(model_path, data_dir, size=DEFAULT_SIZE, upscale=None, workers=None):
    """Mean IoU of a checkpoint on a Carvana-format folder; ``upscale`` = (W, H): every image is first
    resized to W x H (bicubic) and its mask (nearest), then both go through the pipeline's resize."""
    model, _ = load_unet(model_path)
    name = Path(data_dir).name + (f" upscaled to {upscale[0]}x{upscale[1]}" if upscale else "")
    x, y = load_pairs(find_pairs(data_dir), size, workers, upscale=upscale, desc=f"load {name}")
    start = time.monotonic()
    score = evaluate(model.to(DEVICE), x, y, desc=f"score {name}")
    log.info("%s: mean IoU %.4f over %d images (%.0f s)", name, score, len(x), time.monotonic() - start)
    return {"folder": Path(data_dir).name, "images": len(x), "upscaled_to": list(upscale) if upscale else None,
            "mean_iou": score}
