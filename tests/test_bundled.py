"""The bundled checkpoints (the main job's and predict's): small enough to ship, in the ModelZoo
layout, described by their JSON records, and accurate on freshly generated cars."""

import hashlib
import json

import numpy as np
import pytest
import torch

from unet_infer.data import load_image, load_label
from unet_infer.model import count_parameters, load_unet
from unet_infer.metrics import iou_dice, logits_to_mask
from unet_infer.sample import generate
from unet_infer.weights import BUNDLED_WEIGHTS, PREDICT_WEIGHTS

SHIPPED = [BUNDLED_WEIGHTS, PREDICT_WEIGHTS]
EVAL_SEED = 20261127  # the driver's evaluation sample; training used generated cars of seed 101 only


@pytest.mark.parametrize("weights", SHIPPED, ids=lambda path: path.name)
def test_bundled_checkpoint_is_small_and_in_the_modelzoo_layout(weights):
    assert weights.stat().st_size <= 16 * 1024 * 1024
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values()) and len(state) == 136
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    model, layout = load_unet(weights)
    assert (layout.name, layout.n_channels, layout.n_classes, layout.bilinear, layout.bias) == \
        ("modelzoo", 3, 1, False, True)


@pytest.mark.parametrize("weights", SHIPPED, ids=lambda path: path.name)
def test_the_record_describes_the_bundled_checkpoint(weights):
    record = json.loads(weights.with_suffix(".json").read_text())
    model, layout = load_unet(weights)
    assert record["checkpoint_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["width"] == layout.width and record["parameters"] == count_parameters(model)
    assert record["command"].startswith("scripts/train_bundled.sh data=")
    assert record["epochs"] == len(record["history"]) >= 1
    for key in ("seed", "data", "train_wall_seconds", "machine", "final_holdout_iou", "measured"):
        assert key in record
    assert "/" not in json.dumps(record["data"])  # folder names and counts, no paths


def test_bundled_checkpoint_reaches_iou_0_97_on_generated_cars(tmp_path):
    pairs = generate(tmp_path, cars=2, seed=EVAL_SEED, views=4)  # full size, 1918 x 1280
    model, _ = load_unet(BUNDLED_WEIGHTS)
    x = np.stack([load_image(image, 572) for image, _ in pairs])
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)).numpy()
    ious = [iou_dice(logits_to_mask(out), load_label(mask, 572))[0] for out, (_, mask) in zip(logits, pairs)]
    assert np.mean(ious) >= 0.97, ious
