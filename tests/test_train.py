"""The trainer: a tiny run on generated data writes a checkpoint the export stage loads unchanged."""

import numpy as np
import pytest
import torch

from unet_infer import train as train_mod
from unet_infer.cli import UserError, run_cli
from unet_infer.export import pth_to_onnx
from unet_infer.model import detect_layout, load_unet, read_state_dict
from unet_infer.sample import generate


@pytest.fixture(scope="module")
def tiny_sample(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample")
    generate(root, cars=1, seed=3, views=3, width=128, height=96, workers=1)
    return root


def test_dice_loss_is_zero_for_a_perfect_prediction_and_one_for_the_opposite():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    perfect = torch.where(target > 0, 50.0, -50.0)
    assert train_mod.dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-3)
    assert train_mod.dice_loss(-perfect, target).item() == pytest.approx(1 - 1 / (48 + 16 + 1), abs=1e-3)  # eps = 1


def test_random_batch_shapes_and_values(tiny_sample):
    x, y = train_mod.load_dataset(tiny_sample, size=48, workers=1)
    assert x.shape == (3, 3, 48, 48) and x.dtype == np.uint8
    assert y.shape == (3, 48, 48) and set(np.unique(y)) <= {0, 1}
    xb, yb = train_mod.random_batch(x, y, batch=4, crop=32, rng=np.random.default_rng(0))
    assert xb.shape == (4, 3, 32, 32) and yb.shape == (4, 1, 32, 32)
    assert 0.0 <= float(xb.min()) and float(xb.max()) <= 1.0


def test_training_writes_a_modelzoo_layout_checkpoint(tiny_sample, tmp_path, capsys):
    out = tmp_path / "tiny.pth"
    status = run_cli(train_mod.main, ["--data", str(tiny_sample), "--val", str(tiny_sample), "--out", str(out),
                                      "--width", "4", "--epochs", "2", "--steps-per-epoch", "3", "--batch", "2",
                                      "--crop", "32", "--size", "48", "--workers", "1", "--quiet"])
    assert status == 0
    assert "validation IoU" in capsys.readouterr().out
    sd = read_state_dict(out)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    layout = detect_layout(sd)
    assert (layout.name, layout.width, layout.n_classes) == ("modelzoo", 4, 1)
    assert len(sd) == 136
    # the export stage takes it unchanged
    info = pth_to_onnx(out, tmp_path / "tiny.onnx", size=48)
    assert info["layout"] == "modelzoo"

    # fine-tuning from it keeps its width and changes its weights
    tuned = tmp_path / "tuned.pth"
    train_mod.train(tiny_sample, tuned, width=99, epochs=1, steps_per_epoch=2, batch=2, crop=32, size=48,
                    workers=1, init=out)
    before, after = load_unet(out)[0].state_dict(), load_unet(tuned)[0].state_dict()
    assert after["inc.double_conv.0.weight"].shape[0] == 4
    assert not torch.equal(before["inc.double_conv.0.weight"], after["inc.double_conv.0.weight"])


def test_user_errors(tmp_path, tiny_sample, capsys):
    out = tmp_path / "x.pth"
    assert run_cli(train_mod.main, ["--data", str(tmp_path / "none"), "--out", str(out), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(UserError, match="crop"):
        train_mod.train(tiny_sample, out, crop=64, size=48, workers=1)
    assert not out.exists()
