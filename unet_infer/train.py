"""Train the UNet on a Carvana-format folder (real Carvana or the generated sample).

    python3 -m unet_infer.train --data work/train/train_sample --width 16 --epochs 14 --steps-per-epoch 50 --out weights/unet_w16_sample.pth

(scripts/train_bundled.sh makes the training sample and runs exactly this for the bundled checkpoint.)

Images are resized to the pipeline's input size (572, as the preprocess stage does) and the
model trains on random crops of them: a reduced resolution per step at the scale the pipeline
infers at. Loss: binary cross-entropy plus Dice. The result is a plain state_dict in the
ModelZoo layout, which ``unet_pth2onnx.py`` loads unchanged.
"""

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .cli import UserError, run_cli
from .formats import DEFAULT_SIZE, atomic_path
from .metrics import iou
from .model import UNet, build_from_state_dict, count_parameters, read_state_dict
from .data import find_images, load_image, load_label
from .parallel import parallel_map
from .progress import progress, set_quiet

log = logging.getLogger(__name__)


def _load_pair(task):
    image_path, mask_path, size = task
    image = (load_image(image_path, size) * 255.0).round().astype(np.uint8)
    return image, load_label(mask_path, size).astype(np.uint8)


def load_dataset(data_dir, size=DEFAULT_SIZE, limit=None, workers=None):
    """Every ``train/<stem>.jpg`` with its ``train_masks/<stem>_mask.gif``, as uint8 arrays."""
    data_dir = Path(data_dir)
    images = find_images(data_dir / "train")
    if limit:
        images = images[:limit]
    tasks = []
    for path in images:
        mask = data_dir / "train_masks" / f"{path.stem}_mask.gif"
        if not mask.is_file():
            raise UserError(f"{mask}: mask not found for {path}")
        tasks.append((path, mask, size))
    if not tasks:
        raise UserError(f"{data_dir / 'train'}: no images found")
    pairs = list(parallel_map(_load_pair, tasks, workers=workers, desc="load", unit="image"))
    x = np.stack([p[0] for p in pairs])  # N x 3 x S x S uint8
    y = np.stack([p[1] for p in pairs])  # N x S x S uint8 (0/1)
    return x, y


def dice_loss(logits, target, eps=1.0):
    """1 - soft Dice of the car class, averaged over the batch."""
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    return (1 - (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)).mean()


def random_batch(x, y, batch, crop, rng):
    """A batch of random crops with random horizontal flips and brightness/contrast jitter."""
    n, _, size, _ = x.shape
    idx = rng.integers(0, n, batch)
    xs, ys = [], []
    for i in idx:
        top, left = rng.integers(0, size - crop + 1, 2)
        img = x[i, :, top:top + crop, left:left + crop].astype(np.float32) / 255.0
        lab = y[i, top:top + crop, left:left + crop].astype(np.float32)
        if rng.random() < 0.5:
            img, lab = img[:, :, ::-1], lab[:, ::-1]
        gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-0.08, 0.08)
        img = np.clip(img * gain + bias, 0.0, 1.0)
        xs.append(img)
        ys.append(lab)
    return torch.from_numpy(np.ascontiguousarray(np.stack(xs))), \
        torch.from_numpy(np.ascontiguousarray(np.stack(ys)))[:, None]


def evaluate(model, x, y, device, batch=4):
    """Mean IoU of the car class over full-size images (logit > 0)."""
    model.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            xb = torch.from_numpy(x[start:start + batch].astype(np.float32) / 255.0).to(device)
            pred = (model(xb)[:, 0] > 0).cpu().numpy()
            scores += [iou(p, l == 1) for p, l in zip(pred, y[start:start + batch])]
    model.train()
    return float(np.mean(scores))


def train(data_dir, out, width=16, epochs=12, steps_per_epoch=None, batch=8, crop=256, size=DEFAULT_SIZE,
          lr=2e-3, seed=0, device="cpu", val_dir=None, limit=None, workers=None, threads=None, amp=True, init=None):
    """Train and save a state_dict; returns the history (loss and validation IoU per epoch)."""
    if crop > size:
        raise UserError(f"--crop {crop} is larger than --size {size}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available to PyTorch")
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    x, y = load_dataset(data_dir, size, limit, workers)
    val = load_dataset(val_dir, size, workers=workers) if val_dir else None
    if init:
        model, layout = build_from_state_dict(read_state_dict(init), source=str(init))
        if (layout.name, layout.n_channels, layout.n_classes) != ("modelzoo", 3, 1):
            raise UserError(f"{init}: --init needs a ModelZoo-layout UNet with 3 inputs and 1 class, "
                            f"found {layout.describe()}")
        width = layout.width
    else:
        model = UNet(3, 1, bilinear=False, width=width, bias=True)
    model = model.to(device, memory_format=torch.channels_last)
    model.train()
    log.info("training UNet width %d (%.2f M parameters) on %d images, %dx%d crops of %dx%d, %s%s",
             width, count_parameters(model) / 1e6, len(x), crop, crop, size, size, device,
             ", bf16 autocast" if amp else "")
    steps_per_epoch = steps_per_epoch or max(1, math.ceil(len(x) * (size / crop) ** 2 / batch / 2))
    total = epochs * steps_per_epoch
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total, pct_start=0.15)
    history = []
    for epoch in range(1, epochs + 1):
        start, losses = time.monotonic(), []
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch}/{epochs}", unit="step")
        for _ in bar:
            xb, yb = random_batch(x, y, batch, crop, rng)
            xb, yb = xb.to(device, memory_format=torch.channels_last), yb.to(device)
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
                logits = model(xb).float()
            loss = F.binary_cross_entropy_with_logits(logits, yb) + dice_loss(logits, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str(f"loss={np.mean(losses[-20:]):.4f}")
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.monotonic() - start}
        if val is not None:
            record["val_iou"] = evaluate(model, *val, device)
        history.append(record)
        log.info("epoch %d: loss %.4f%s (%.0f s)", epoch, record["loss"],
                 f", validation IoU {record['val_iou']:.4f}" if "val_iou" in record else "", record["seconds"])
    model.eval()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    log.info("wrote %s", out)
    return history


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Carvana-format folder with train/ and train_masks/")
    parser.add_argument("--out", required=True, help="state_dict file to write (.pth)")
    parser.add_argument("--width", type=int, default=16, help="base width of the UNet (default: 16)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs (default: 12)")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="optimiser steps per epoch (default: enough crops to cover the images twice)")
    parser.add_argument("--batch", type=int, default=8, help="crops per step (default: 8)")
    parser.add_argument("--crop", type=int, default=256, help="training crop size (default: 256)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help="images are first resized to SIZE x SIZE, as in preprocessing (default: 572)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default: 2e-3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--val", default=None, help="Carvana-format folder scored after every epoch")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--workers", type=int, default=None, help="processes for loading (default: all cores)")
    parser.add_argument("--threads", type=int, default=None, help="PyTorch threads (default: PyTorch's)")
    parser.add_argument("--init", default=None,
                        help="start from this checkpoint (fine-tuning; its width wins over --width)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="train in plain fp32 instead of bf16 autocast")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for name in ("width", "epochs", "batch", "crop", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    set_quiet(args.quiet)
    history = train(args.data, args.out, args.width, args.epochs, args.steps_per_epoch, args.batch, args.crop,
                    args.size, args.lr, args.seed, args.device, args.val, args.limit, args.workers, args.threads, args.amp, args.init)
    last = history[-1]
    print(f"{args.out}: width {args.width}, {args.epochs} epochs, final loss {last['loss']:.4f}"
          + (f", validation IoU {last['val_iou']:.4f}" if "val_iou" in last else ""))


if __name__ == "__main__":
    sys.exit(run_cli(main))
