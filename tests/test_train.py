"""The trainer: a tiny run on generated data writes a checkpoint the export stage loads unchanged."""

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_infer import train as train_mod
from unet_infer.cli import UserError, run_cli
from unet_infer.export import pth_to_onnx
from unet_infer.metrics import iou_dice
from unet_infer.model import UNet, detect_layout, load_unet, read_state_dict
from unet_infer.sample import generate
from unet_infer.train import data as train_data, loop as train_loop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def four_cars(tmp_path_factory):
    """4 generated cars x 2 views, small: enough to hold whole cars out."""
    root = tmp_path_factory.mktemp("cars")
    generate(root, cars=4, seed=11, views=2, width=96, height=64, workers=1)
    return root


def load(folder):
    return train_data.load_pairs(train_data.find_pairs(folder), 48, workers=1)


def test_dice_loss_is_zero_for_a_perfect_prediction_and_one_for_the_opposite():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    perfect = torch.where(target > 0, 50.0, -50.0)
    assert train_loop.dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-3)
    assert train_loop.dice_loss(-perfect, target).item() == pytest.approx(1 - 1 / (48 + 16 + 1), abs=1e-3)  # eps = 1


def test_random_batch_shapes_and_values(four_cars):
    x, y = load(four_cars)
    assert x.shape == (8, 3, 48, 48) and x.dtype == np.uint8
    assert y.shape == (8, 48, 48) and set(np.unique(y)) <= {0, 1}
    xb, yb = train_data.random_batch(x, y, batch=4, crop=32, rng=np.random.default_rng(0))
    assert xb.shape == (4, 3, 32, 32) and yb.shape == (4, 1, 32, 32)
    assert 0.0 <= float(xb.min()) and float(xb.max()) <= 1.0


def test_training_writes_a_modelzoo_layout_checkpoint(four_cars, tmp_path, capsys):
    out = tmp_path / "tiny.pth"
    status = run_cli(train_mod.main, ["--data", str(four_cars), "--measure", str(four_cars), "--out", str(out),
                                      "--width", "4", "--epochs", "2", "--steps-per-epoch", "3", "--batch", "2",
                                      "--crop", "32", "--size", "48", "--workers", "1", "--quiet"])
    assert status == 0
    assert f"{four_cars.name}: mean IoU " in capsys.readouterr().out  # measured, no record asked for
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
    train_mod.train(four_cars, tuned, width=99, epochs=1, steps_per_epoch=2, batch=2, crop=32, size=48,
                    workers=1, init=out)
    before, after = load_unet(out)[0].state_dict(), load_unet(tuned)[0].state_dict()
    assert after["inc.double_conv.0.weight"].shape[0] == 4
    assert not torch.equal(before["inc.double_conv.0.weight"], after["inc.double_conv.0.weight"])


def test_user_errors(tmp_path, four_cars, capsys):
    out = tmp_path / "x.pth"
    assert run_cli(train_mod.main, ["--data", str(tmp_path / "none"), "--out", str(out), "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(UserError, match="crop"):
        train_mod.train(four_cars, out, crop=64, size=48, workers=1)
    for option, value in (("--ema", "1"), ("--blur", "1.5"), ("--extra-fraction", "-0.1")):  # before any work
        assert run_cli(train_mod.main, ["--data", str(four_cars), "--out", str(out), option, value]) == 2
        assert option in capsys.readouterr().err
    assert not out.exists()


# ---- held-out split, resuming, the complete-run check ----------------------------------------


def test_split_by_car_is_deterministic_disjoint_and_keeps_cars_whole():
    stems = [f"{car:012x}_{view:02d}" for car in range(20) for view in range(1, 17)]
    train_idx, hold_idx, held = train_data.split_by_car(stems, 4, seed=5)
    assert (train_idx, hold_idx, held) == train_data.split_by_car(list(stems), 4, seed=5)
    assert len(held) == 4 and len(hold_idx) == 4 * 16 and len(train_idx) == 16 * 16
    assert not set(train_idx) & set(hold_idx) and sorted(train_idx + hold_idx) == list(range(len(stems)))
    assert {train_data.car_id(stems[i]) for i in hold_idx} == set(held)
    assert not {train_data.car_id(stems[i]) for i in train_idx} & set(held)
    # the split depends on the seed and the cars, not on the order of the files
    assert train_data.split_by_car(stems[::-1], 4, seed=5)[2] == held
    assert any(train_data.split_by_car(stems, 4, seed=s)[2] != held for s in range(6, 10))
    assert train_data.split_by_car(stems, 0, seed=5)[1] == []
    with pytest.raises(UserError, match="only 20 cars"):
        train_data.split_by_car(stems, 20, seed=5)


def test_random_batch_augmentations_keep_values_and_masks_binary(four_cars):
    x, y = load(four_cars)
    aug = train_data.Augment(scale_min=0.6, scale_max=1.5, blur=1.0, colour=1.0)
    extra = (x[:1], y[:1])
    xb, yb = train_data.random_batch(x, y, 6, 32, np.random.default_rng(1), aug, extra, 0.5)
    assert xb.shape == (6, 3, 32, 32) and yb.shape == (6, 1, 32, 32)
    assert 0.0 <= float(xb.min()) and float(xb.max()) <= 1.0
    assert set(torch.unique(yb).tolist()) <= {0.0, 1.0}
    # the same generator state gives the same batch
    again = train_data.random_batch(x, y, 6, 32, np.random.default_rng(1), aug, extra, 0.5)
    assert torch.equal(xb, again[0]) and torch.equal(yb, again[1])


def _tiny_args(data, out, ckpt, epochs=3):
    return ["--data", str(data), "--out", str(out), "--width", "4", "--epochs", str(epochs),
            "--steps-per-epoch", "2", "--batch", "2", "--crop", "32", "--size", "48", "--holdout-cars", "1",
            "--scale", "0.8", "1.25", "--blur", "0.5", "--workers", "1", "--threads", "1", "--quiet",
            "--checkpoint-dir", str(ckpt), "--resume"]


def test_a_stopped_run_resumes_where_it_stopped_and_a_finished_one_is_not_retrained(four_cars, tmp_path,
                                                                                      monkeypatch, capsys, caplog):
    caplog.set_level(logging.INFO, logger="unet_infer.train")
    # the reference: 3 epochs in one go
    ref = tmp_path / "ref.pth"
    assert run_cli(train_mod.main, _tiny_args(four_cars, ref, tmp_path / "ref_ckpt")) == 0

    # the same run, stopped after its 2nd epoch's checkpoint (as Ctrl-C or a kill would)
    out, ckpt = tmp_path / "m.pth", tmp_path / "ckpt"
    real_save = train_loop.save_checkpoint

    def save_then_stop(path, model, optimiser, schedule, rng, epoch, *rest):
        real_save(path, model, optimiser, schedule, rng, epoch, *rest)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "save_checkpoint", save_then_stop)  # where train() looks it up
    assert run_cli(train_mod.main, _tiny_args(four_cars, out, ckpt)) == 130
    monkeypatch.undo()
    assert not out.exists()
    state = torch.load(ckpt / train_mod.CHECKPOINT_NAME, weights_only=True)  # plain tensors and types only
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert state["schedule"]["last_epoch"] == 4

    # the same command continues with epoch 3 and ends where the uninterrupted run ended
    caplog.clear()
    assert run_cli(train_mod.main, _tiny_args(four_cars, out, ckpt)) == 0
    assert "resuming after epoch 2 of 3" in caplog.text
    assert "epoch 3/3: loss" in caplog.text and "epoch 1/3: loss" not in caplog.text
    state = torch.load(ckpt / train_mod.CHECKPOINT_NAME, weights_only=True)
    assert state["epoch"] == 3 and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert all("holdout_iou" in h for h in state["history"])
    resumed, reference = read_state_dict(out), read_state_dict(ref)
    assert detect_layout(resumed).name == "modelzoo" and len(resumed) == 136
    for key in reference:
        assert torch.allclose(resumed[key], reference[key], rtol=1e-4, atol=1e-5), key

    # run again: complete, nothing trained, the checkpoint untouched
    stamp = (ckpt / train_mod.CHECKPOINT_NAME).stat().st_mtime_ns
    out.unlink()
    caplog.clear()
    capsys.readouterr()
    assert run_cli(train_mod.main, _tiny_args(four_cars, out, ckpt)) == 0
    assert "already complete" in capsys.readouterr().out
    assert "the run is complete" in caplog.text and ": loss" not in caplog.text
    assert (ckpt / train_mod.CHECKPOINT_NAME).stat().st_mtime_ns == stamp
    assert out.is_file()

    # other settings on the same checkpoint folder are refused, and so is a silent restart
    assert run_cli(train_mod.main, _tiny_args(four_cars, out, ckpt, epochs=4)) == 2
    assert "other settings" in capsys.readouterr().err
    args = _tiny_args(four_cars, out, ckpt)
    args.remove("--resume")
    assert run_cli(train_mod.main, args) == 2
    assert "--resume" in capsys.readouterr().err


def test_info_json_and_measuring(four_cars, tmp_path, capsys):
    out, info = tmp_path / "m.pth", tmp_path / "m.json"
    args = _tiny_args(four_cars, out, tmp_path / "ckpt", epochs=1) + [
        "--measure", str(four_cars), "--measure-upscaled", str(four_cars), "--info-json", str(info),
        "--command", "scripts/train_bundled.sh data=<cars>"]
    assert run_cli(train_mod.main, args) == 0
    record = json.loads(info.read_text())
    assert record["width"] == 4 and record["epochs"] == 1 and record["seed"] == 0
    assert record["command"] == "scripts/train_bundled.sh data=<cars>"
    assert record["data"]["data"] == {"folder": four_cars.name, "images": 8, "cars": 4, "held_out_cars": 1,
                                      "held_out_images": 2, "training_images": 6}
    assert [(m["folder"], m["images"], m["upscaled_to"]) for m in record["measured"]] == [
        (four_cars.name, 8, None), (four_cars.name, 8, [1918, 1280])]
    assert all(0.0 <= m["mean_iou"] <= 1.0 for m in record["measured"])
    assert 0.0 <= record["final_holdout_iou"] <= 1.0
    assert str(tmp_path) not in info.read_text()  # folder names only, no paths
    # a second run of a finished job measures nothing again
    capsys.readouterr()
    assert run_cli(train_mod.main, args) == 0
    assert "up to date" in capsys.readouterr().out
    # measured again on other folders by another command line: the record keeps how it was trained
    record["machine"] = "the machine that trained it"
    info.write_text(json.dumps(record))
    assert run_cli(train_mod.main, args[:args.index("--measure-upscaled")] + args[args.index("--info-json"):-1]
                   + ["another command"]) == 0
    again = json.loads(info.read_text())
    assert [m["upscaled_to"] for m in again["measured"]] == [None]
    assert again["command"] == "scripts/train_bundled.sh data=<cars>"
    assert again["machine"] == "the machine that trained it"


def test_evaluate_through_onnxruntime_scores_as_pytorch(four_cars):
    x, y = load(four_cars)
    torch.manual_seed(0)
    model = UNet(3, 1, bilinear=False, width=4, bias=True)
    with torch.no_grad():
        logits = model.eval()(torch.from_numpy(x.astype(np.float32) / 255)).numpy()
    want = np.mean([iou_dice(p[0] > 0, lab == 1)[0] for p, lab in zip(logits, y)])
    assert train_loop.evaluate(model.train(), x, y) == pytest.approx(want, abs=1e-3)
    assert model.training  # put back as it was


def test_help_names_the_module_and_hides_empty_defaults(capsys):
    """In process (tests/test_help.py runs python3 -m unet_infer.train --help itself)."""
    with pytest.raises(SystemExit) as done:
        train_mod.main(["--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and out.startswith("usage: python3 -m unet_infer.train")
    assert "(default: None)" not in out and "(default: 16)" in out


# ---- scripts/train_bundled.sh: arguments ------------------------------------------------------


@pytest.mark.parametrize("argv,message", [
    (["a", "b", "c"], "unknown option 'a' (options are key=value"),
    (["data=/nowhere", "bogus=1"], "unknown option 'bogus=1'"),
    (["--epochs", "3"], "unknown option '--epochs' (options are key=value"),
    ([], "data=DIR is required"),
    (["data=/nowhere"], "not a Carvana-format folder"),
    (["data={cars}", "epochs=zero"], "epochs must be"),
    (["data={cars}", "seed=-1"], "seed must be"),
    (["data={cars}", "out=x.onnx"], "out must name a .pth"),
    (["data={cars}", "model=large"], "model must be main or predict"),
])
def test_train_bundled_rejects_bad_arguments(argv, message, four_cars, tmp_path):
    argv = [a.replace("{cars}", str(four_cars)) for a in argv]
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "train_bundled.sh"), *argv, f"workdir={tmp_path}/w"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w").exists()  # nothing started


def test_train_bundled_help():
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "train_bundled.sh"), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    assert "data=DIR" in proc.stdout and "examples:" in proc.stdout


# ---- the average of the weights, the BatchNorm statistics ---------------------------------------


def test_ema_update_ramps_up_then_averages_with_the_decay():
    model = torch.nn.BatchNorm1d(2)
    ema = {k: v.clone().float() if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.fill_(3.0)
    model.num_batches_tracked += 5
    train_loop.ema_update(ema, model, decay=0.99, step=0)  # first step: decay (1 + 0) / (10 + 0) = 0.1
    assert torch.allclose(ema["weight"], torch.full((2,), 0.1 * 1.0 + 0.9 * 3.0))
    assert int(ema["num_batches_tracked"]) == 5  # integers are copied, not averaged
    train_loop.ema_update(ema, model, decay=0.99, step=10_000)  # late: the decay itself
    assert torch.allclose(ema["weight"], 0.99 * torch.full((2,), 2.8) + 0.01 * 3.0)


def test_recompute_batchnorm_gives_the_mean_over_the_clean_images():
    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.BatchNorm2d(3))
    model.eval()
    x = np.random.default_rng(0).integers(0, 256, (8, 3, 4, 4), dtype=np.uint8)
    train_loop.recompute_batchnorm(model, x, "cpu", batch=4)
    want = torch.from_numpy(x.astype(np.float32) / 255).mean((0, 2, 3))
    assert torch.allclose(model[1].running_mean, want, atol=1e-6)
    assert not model.training and model[1].momentum == 0.1  # put back as it was


def test_ema_and_batchnorm_are_recorded_and_a_finished_run_resumes_into_the_same_file(four_cars, tmp_path):
    out, ckpt = tmp_path / "m.pth", tmp_path / "ckpt"
    kwargs = dict(width=4, epochs=2, steps_per_epoch=2, batch=2, crop=32, size=48, workers=1, holdout_cars=1,
                  ema=0.9, bn_images=3, checkpoint_dir=ckpt, resume=True)
    result = train_mod.train(four_cars, out, **kwargs)
    assert all("holdout_iou_raw" in h for h in result["history"]) and result["config"]["ema"] == 0.9
    assert result["bn_recomputed"]["images"] == 3
    first = out.read_bytes()
    out.unlink()
    again = train_mod.train(four_cars, out, **kwargs)
    assert again["complete_before"] and again["bn_recomputed"] == result["bn_recomputed"]
    assert torch.equal(read_state_dict(out)["inc.double_conv.1.running_mean"],
                       torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["final"]
                       ["inc.double_conv.1.running_mean"])
    assert len(first) == out.stat().st_size
