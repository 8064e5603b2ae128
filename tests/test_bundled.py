"""The bundled checkpoint: small enough to ship, and accurate on freshly generated cars."""

from pathlib import Path

import numpy as np
import torch

from unet_infer.model import count_parameters, load_unet
from unet_infer.postprocess import load_label, score_arrays
from unet_infer.preprocess import load_image
from unet_infer.sample import generate

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "unet_carvana.pth"
EVAL_SEED = 20261127  # the driver's evaluation sample; training used seeds 1 (cars) and 7 (validation)


def test_bundled_checkpoint_is_small_and_in_the_modelzoo_layout():
    assert WEIGHTS.stat().st_size <= 10 * 1024 * 1024
    model, layout = load_unet(WEIGHTS)
    assert (layout.name, layout.n_channels, layout.n_classes, layout.width) == ("modelzoo", 3, 1, 16)
    assert 1.5e6 < count_parameters(model) < 2.5e6


def test_bundled_checkpoint_reaches_iou_0_97_on_generated_cars(tmp_path):
    pairs = generate(tmp_path, cars=2, seed=EVAL_SEED, views=4)  # full size, 1918 x 1280
    model, _ = load_unet(WEIGHTS)
    x = np.stack([load_image(image, 572) for image, _ in pairs])
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)).numpy()
    ious = [score_arrays(out, load_label(mask, 572))[0] for out, (_, mask) in zip(logits, pairs)]
    assert np.mean(ious) >= 0.97, ious
