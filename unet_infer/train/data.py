"""The trainer's data: Carvana-format folders as uint8 arrays in memory, the split by car, and the
augmented random crops every step draws.

The folders are paired by ``data.pair_carvana`` (the one pairing routine of the package); a car is
the part of a stem before its view number (``<carid>_<NN>``).
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..cli import UserError
from ..data import DECODE_ERRORS, MASK_DIR, image_to_array, load_label, mask_not_found, mask_path, pair_carvana
from ..formats import DEFAULT_SIZE
from ..parallel import parallel_map

ORIGINAL_SIZE = (1918, 1280)  # Carvana's photos, W x H


def car_id(stem):
    """``0cdf5b5d0ce1_01`` -> ``0cdf5b5d0ce1``: the car, the part before the view number."""
    return stem.rsplit("_", 1)[0] if "_" in stem else stem


def find_pairs(data_dir):
    """``[(image, mask), ...]`` for every ``train/<stem>.jpg`` and its ``train_masks/<stem>_mask.gif``
    (natural order); every image needs its mask."""
    pairs = pair_carvana(data_dir, require_masks=False)
    missing = [(mask_path(Path(data_dir) / MASK_DIR, stem), image) for stem, image, mask in pairs if mask is None]
    if missing:
        raise UserError(mask_not_found(missing, len(pairs)))
    return [(image, mask) for _, image, mask in pairs]


def split_by_car(stems, holdout_cars, seed):
    """Hold ``holdout_cars`` whole cars out: ``(train indices, held-out indices, held-out car ids)``,
    drawn from their own random stream of ``seed`` (not from the file order or the augmentation)."""
    cars = sorted({car_id(s) for s in stems})
    if holdout_cars and holdout_cars >= len(cars):
        raise UserError(f"--holdout-cars {holdout_cars}: the data has only {len(cars)} cars "
                        f"(at least one must be left for training)")
    order = np.random.default_rng([seed, 0x5117]).permutation(len(cars))
    held = sorted(cars[i] for i in order[:holdout_cars])
    held_set = set(held)
    train_idx = [i for i, s in enumerate(stems) if car_id(s) not in held_set]
    hold_idx = [i for i, s in enumerate(stems) if car_id(s) in held_set]
    return train_idx, hold_idx, held


def _load_pair(task):
    """Worker: one image and its mask, as the pipeline sees them; ``upscale`` = (W, H) first
    resizes both to W x H (image bicubic, mask nearest)."""
    index, image_path, label_path, size, upscale = task
    try:
        with Image.open(image_path) as img:
            img.load()
            if upscale:
                img = img.convert("RGB").resize(upscale, Image.Resampling.BICUBIC)
            image = image_to_array(img, size)
    except DECODE_ERRORS as exc:
        raise UserError(f"{image_path}: cannot read the image ({type(exc).__name__}: {exc})") from None
    if upscale:
        label = load_label(label_path, None)  # its own size; nearest resizing commutes with the car test
        label = np.array(Image.fromarray(label.astype(np.uint8)).resize(upscale, Image.Resampling.NEAREST)
                         .resize((size, size), Image.Resampling.NEAREST)) > 0
    else:
        label = load_label(label_path, size)
    return index, (image * 255.0).round().astype(np.uint8), label.astype(np.uint8)


def load_pairs(pairs, size=DEFAULT_SIZE, workers=None, upscale=None, desc="load"):
    """Images (N x 3 x S x S uint8, exactly the pipeline's input x 255) and labels (N x S x S, 0/1)."""
    x = np.empty((len(pairs), 3, size, size), np.uint8)
    y = np.empty((len(pairs), size, size), np.uint8)
    tasks = [(i, str(img), str(mask), size, upscale) for i, (img, mask) in enumerate(pairs)]
    for i, image, label in parallel_map(_load_pair, tasks, workers=workers, desc=desc, unit="image"):
        x[i], y[i] = image, label  # results come in completion order: put each in its place
    return x, y


# ---- augmentation ----


@dataclass(frozen=True)
class Augment:
    """What ``random_batch`` does to each crop."""

    scale_min: float = 1.0   # zoom: output pixels per pixel of the SIZE x SIZE image
    scale_max: float = 1.0
    blur: float = 0.0        # probability of a Gaussian blur or an unsharp mask
    colour: float = 1.0      # strength of the brightness / contrast / saturation / white-balance jitter


def _blur_or_sharpen(imgs, sigmas, amounts, radius=5):
    """Per image: ``img + amount * (img - blur(img, sigma))`` (amount -1: the blurred image itself)."""
    n, c, h, w = imgs.shape
    t = torch.arange(-radius, radius + 1, dtype=imgs.dtype)
    k = torch.exp(-0.5 * (t[None] / sigmas[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c) x (2r+1)
    flat = F.pad(imgs.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(flat, k[:, None, None, :], groups=n * c)
    blurred = F.conv2d(blurred, k[:, None, :, None], groups=n * c).reshape(n, c, h, w)
    return imgs + amounts[:, None, None, None] * (imgs - blurred)


def _crop(sx, sy, crop, rng, augment, zoom):
    """One random window of a random image of (sx, sy), maybe flipped, resized to ``crop``."""
    i = int(rng.integers(0, len(sx)))
    size_h, size_w = sx.shape[2], sx.shape[3]
    win = crop
    if zoom:
        win = int(round(crop / math.exp(rng.uniform(math.log(augment.scale_min), math.log(augment.scale_max)))))
    win = max(1, min(win, size_h, size_w))
    top = int(rng.integers(0, size_h - win + 1))
    left = int(rng.integers(0, size_w - win + 1))
    img = sx[i, :, top:top + win, left:left + win]
    lab = sy[i, top:top + win, left:left + win]
    if rng.random() < 0.5:
        img, lab = img[:, :, ::-1], lab[:, ::-1]
    img = torch.from_numpy(np.ascontiguousarray(img))
    lab = torch.from_numpy(np.ascontiguousarray(lab))
    if win == crop:
        return img.float(), lab.float()
    shrink = win > crop
    img = F.interpolate(img.float()[None], size=(crop, crop), mode="bilinear", align_corners=False,
                        antialias=shrink)[0]
    soft = F.interpolate(lab.float()[None, None], size=(crop, crop), mode="bilinear", align_corners=False,
                         antialias=shrink)[0, 0]
    return img, (soft > 0.5).float()


def random_batch(x, y, batch, crop, rng, augment=None, extra=None, extra_fraction=0.0):
    """A batch of augmented random crops: (B x 3 x crop x crop float, B x 1 x crop x crop 0/1 float).

    Each crop: a random window of a random image (zoomed by a log-uniform factor from
    ``augment.scale_min`` to ``scale_max``, resized bilinearly to ``crop``), flipped left-right half
    the time; then, with probability ``augment.blur``, blurred (Gaussian, sigma 0.4-1.4) or
    sharpened (unsharp mask) in equal shares, and colour-jittered. ``extra`` = (images, labels) of a
    second pool (generated cars): each crop comes from it with probability ``extra_fraction``.
    """
    augment = augment or Augment()
    imgs = torch.empty(batch, 3, crop, crop)
    labs = torch.empty(batch, 1, crop, crop)
    zoom = not augment.scale_min == augment.scale_max == 1.0
    for b in range(batch):
        use_extra = extra is not None and extra_fraction and rng.random() < extra_fraction
        sx, sy = extra if use_extra else (x, y)
        imgs[b], labs[b, 0] = _crop(sx, sy, crop, rng, augment, zoom)
    imgs.div_(255.0)
    if augment.blur:
        chosen = np.flatnonzero(rng.random(batch) < augment.blur)
        if chosen.size:
            sigmas = torch.from_numpy(rng.uniform(0.4, 1.4, chosen.size).astype(np.float32))
            sharpen = rng.random(chosen.size) < 0.5
            amounts = np.where(sharpen, rng.uniform(0.3, 1.2, chosen.size), -1.0).astype(np.float32)
            idx = torch.from_numpy(chosen)
            imgs[idx] = _blur_or_sharpen(imgs[idx], sigmas, torch.from_numpy(amounts))
    if augment.colour:
        s = augment.colour
        gain = rng.uniform(1 - 0.2 * s, 1 + 0.2 * s, (batch, 1, 1, 1))
        balance = rng.uniform(1 - 0.05 * s, 1 + 0.05 * s, (batch, 3, 1, 1))
        bias = rng.uniform(-0.08 * s, 0.08 * s, (batch, 1, 1, 1))
        saturation = rng.uniform(1 - 0.3 * s, 1 + 0.3 * s, (batch, 1, 1, 1))
        grey = imgs.mean(1, keepdim=True)
        imgs = grey + torch.from_numpy(saturation.astype(np.float32)) * (imgs - grey)
        imgs = imgs * torch.from_numpy((gain * balance).astype(np.float32)) + torch.from_numpy(bias.astype(np.float32))
    return imgs.clamp_(0.0, 1.0), labs
