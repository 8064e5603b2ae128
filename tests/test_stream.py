"""The streaming mode: same IoU as the file-based flow, no .bin files, summary, masks, errors."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny_unet import varied_unet
from unet_infer.bench import runner
from unet_infer.cli import run_cli
from unet_infer.export import pth_to_onnx
from unet_infer.formats import read_bin
from unet_infer.journal import pack_mask, unpack_mask
from unet_infer.metrics import logits_to_mask
from unet_infer.postprocess import score_folder
from unet_infer.data import load_image
from unet_infer.parallel import Prefetcher
from unet_infer.preprocess import preprocess_folder
from unet_infer import rename
from unet_infer.results import select_extremes, write_masks
from unet_infer.scoring import Extremes, masks_folder
from unet_infer.stream import main
from unet_infer.summary import REQUIRED_KEYS

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
N_IMAGES = 7


def picture(i, width=48, height=36):
    """A smooth RGB picture (uint8) and an off-centre ellipse (bool), different for each ``i``."""
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    rgb = np.stack([0.5 + 0.5 * np.sin(rng.uniform(2, 9) * x + rng.uniform(2, 9) * y + rng.uniform(0, 6))
                    for _ in range(3)], axis=-1)
    cx, cy, rx, ry = rng.uniform(0.35, 0.65, 2).tolist() + rng.uniform(0.2, 0.4, 2).tolist()
    return (rgb * 255).round().astype(np.uint8), ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``carvana/train/<id>_<NN>.jpg`` (48 x 36) and palette GIF masks (0/1) in ``train_masks``."""
    root = tmp_path_factory.mktemp("stream_data") / "carvana"
    train, masks = root / "train", root / "train_masks"
    train.mkdir(parents=True)
    masks.mkdir()
    stems = []
    for i in range(N_IMAGES):
        stem = f"{i:012x}_{i + 1:02d}"
        rgb, mask = picture(i)
        Image.fromarray(rgb).save(train / f"{stem}.jpg", quality=90)
        gif = Image.frombytes("P", (48, 36), mask.astype(np.uint8).tobytes())
        gif.putpalette([0, 0, 0, 255, 255, 255])
        gif.save(masks / f"{stem}_mask.gif", optimize=False)
        stems.append(stem)
    return root, stems


@pytest.fixture(scope="module")
def models(tmp_path_factory, data):
    """A width-4 UNet whose output bias puts the median logit of the data at 0 (so IoUs vary)."""
    folder = tmp_path_factory.mktemp("stream_models")
    model = varied_unet()
    images = np.stack([load_image(p, SIZE) for p in sorted((data[0] / "train").iterdir())])
    with torch.inference_mode():
        logits = model(torch.from_numpy(images))
        model.outc.conv.bias -= float(logits.median())
    torch.save(model.state_dict(), folder / "unet.pth")
    pth_to_onnx(folder / "unet.pth", folder / "unet.onnx", size=SIZE)
    return folder


def run_stream(*argv):
    return main([*map(str, argv), "--size", str(SIZE), "--threads", "1", "--workers", "1", "--quiet"])


def file_flow(models, data_root, work, batchsize):
    """The guide's flow: preprocess, run, rename, score; the per-image records and the output folder."""
    preprocess_folder(data_root / "train", work / "prep_bin", size=SIZE, workers=1)
    runner.main(["--model", str(models / "unet.onnx"), "--input", str(work / "prep_bin"), "--output",
                 str(work / "result"), "--output_dirname", f"bs{batchsize}", "--batchsize", str(batchsize),
                 "--threads", "1", "--quiet"])
    rename.main(["--output", str(work / "result" / f"bs{batchsize}"), "--quiet"])
    out_dir = work / "result" / f"bs{batchsize}"
    return score_folder(out_dir, data_root / "train_masks", size=SIZE, workers=1), out_dir


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, models, data):
    """One streaming run (bs 3: the last of 7 images is padded) into a folder of its own."""
    work = tmp_path_factory.mktemp("stream_work")
    run_stream("--model", models / "unet.onnx", "--data", data[0], "--batchsize", 3,
               "--result", work / "result_bs3.txt", "--summary", work / "result" / "bs3_summary.json")
    return work


def test_same_iou_as_the_file_based_flow_and_no_bin_files(streamed, models, data, tmp_path):
    assert not list(streamed.rglob("*.bin")) and not list(data[0].rglob("*.bin"))
    assert not list(models.rglob("*.bin"))
    records, _ = file_flow(models, data[0], tmp_path, 3)
    result = json.loads((streamed / "result_bs3.json").read_text())
    assert [r["name"] for r in result["per_image"]] == [r["name"] for r in records] == data[1]
    ious = np.array([r["iou"] for r in records])
    assert len(set(ious)) == N_IMAGES and 0 < ious.min() and ious.max() < 1  # a test that can fail
    for got, want in zip(result["per_image"], records):
        assert got["iou"] == pytest.approx(want["iou"], abs=1e-12)
        assert got["dice"] == pytest.approx(want["dice"], abs=1e-12)
    text = (streamed / "result_bs3.txt").read_text().splitlines()
    assert text[0] == "name IoU Dice" and len(text) == N_IMAGES + 1
    made = result["provenance"]  # what a report checks before it sets runs side by side
    assert list(made) == ["model", "weights", "backend", "precision", "data", "size"]
    assert (made["model"], made["backend"], made["precision"], made["data"], made["size"]) == (
        str((models / "unet.onnx").resolve()), "onnxruntime", "fp32", str(data[0].resolve()), SIZE)


def test_summary_in_the_ais_bench_schema(streamed, data):
    summary = json.loads((streamed / "result" / "bs3_summary.json").read_text())
    assert set(REQUIRED_KEYS) <= set(summary)
    assert {"backend", "precision", "machine", "mode", "decode_wait_ms", "wall_s"} <= set(summary)
    assert summary["mode"] == "stream" and summary["backend"] == "onnxruntime"
    assert summary["precision"] == "fp32"
    assert summary["decode_wait_ms"] >= 0 and summary["wall_s"] > 0
    assert summary["NPU_compute_time"]["count"] == 3  # 7 images in batches of 3
    assert summary["throughput"] > 0
    entries = [summary["filesinfo"][str(i)] for i in range(N_IMAGES)]
    assert [Path(e["infiles"][0]).name for e in entries] == [f"{s}.jpg" for s in data[1]]
    assert all(e["outfiles"] == [] for e in entries)
    assert summary["args"]["batchsize"] == 3


def test_masks_of_the_worst_and_best_images(streamed, models, data, tmp_path):
    records, out_dir = file_flow(models, data[0], tmp_path, 3)
    worst, best = select_extremes(records)
    expected = {r["name"] for r in worst + best}
    assert len(expected) == N_IMAGES
    folder = streamed / "result" / "bs3_masks"
    assert {p.stem for p in folder.iterdir()} == expected
    for name in expected:
        with Image.open(folder / f"{name}.png") as img:
            assert img.mode == "L" and img.size == (SIZE, SIZE)
            png = np.asarray(img)
        assert set(np.unique(png)) <= {0, 255}
        want = logits_to_mask(read_bin(out_dir / f"{name}.bin", shape=(1, SIZE, SIZE)))
        assert np.array_equal(png == 255, want)


def test_torch_backend_with_the_checkpoint(streamed, models, data, tmp_path, capsys):
    run_stream("--model", models / "unet.pth", "--data", data[0], "--batchsize", 4,
               "--result", tmp_path / "r.txt", "--summary", tmp_path / "s.json", "--masks", tmp_path / "m")
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("Performance Summary------------------") and out[-1].startswith("IOU Average: ")
    got = json.loads((tmp_path / "r.json").read_text())["per_image"]
    want = json.loads((streamed / "result_bs3.json").read_text())["per_image"]
    assert [g["name"] for g in got] == [w["name"] for w in want]
    assert np.allclose([g["iou"] for g in got], [w["iou"] for w in want], atol=0.02)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["backend"] == "torch" and summary["precision"] == "fp32"
    assert summary["NPU_compute_time"]["count"] == 2
    assert len(list((tmp_path / "m").glob("*.png"))) == N_IMAGES  # 4 worst and the 3 others as best
    assert not list(tmp_path.rglob("*.bin"))


def test_upload_ahead_gives_the_same_results(models, data, tmp_path, monkeypatch):
    """The CUDA order (batch k+1 uploaded before batch k runs), here on the CPU torch backend."""
    from unet_infer.backends.torch_backend import TorchBackend
    calls = []
    load, upload, run = TorchBackend.load, TorchBackend.upload, TorchBackend.run

    def load_async(self, *args, **kwargs):
        load(self, *args, **kwargs)
        self.async_upload = True

    def upload_logged(self, *arrays, wait=True):
        calls.append(("upload", wait))
        return upload(self, *arrays, wait=wait)

    def run_logged(self, *inputs):
        calls.append(("run", None))
        return run(self, *inputs)

    def stream_torch(tag):
        run_stream("--model", models / "unet.pth", "--data", data[0], "--batchsize", 2,
                   "--result", tmp_path / f"{tag}.txt", "--summary", tmp_path / f"{tag}_summary.json")
        return json.loads((tmp_path / f"{tag}.json").read_text())["per_image"]

    monkeypatch.setattr(TorchBackend, "upload", upload_logged)
    monkeypatch.setattr(TorchBackend, "run", run_logged)
    plain = stream_torch("plain")
    assert calls[2:6] == [("upload", True), ("run", None), ("upload", True), ("run", None)]
    calls.clear()
    monkeypatch.setattr(TorchBackend, "load", load_async)
    ahead = stream_torch("ahead")
    # warm-up (upload, run), then: upload 0, upload 1, run 0, upload 2, run 1, ... run 3
    assert calls[2:7] == [("upload", False), ("upload", False), ("run", None), ("upload", False), ("run", None)]
    assert calls.count(("run", None)) == 1 + 4 and calls[-2:] == [("run", None), ("run", None)]
    assert ahead == plain
    summary = json.loads((tmp_path / "ahead_summary.json").read_text())
    assert summary["NPU_compute_time"]["count"] == summary["H2D_latency"]["count"] == 4


def test_without_summary_no_masks(models, data, tmp_path):
    run_stream("--model", models / "unet.onnx", "--data", data[0], "--result", tmp_path / "r.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.txt"]


def test_unreadable_image_is_named_and_the_rest_scored(models, data, tmp_path, capsys):
    root = tmp_path / "carvana"
    (root / "train").mkdir(parents=True)
    (root / "train_masks").mkdir()
    for stem in data[1][:3]:
        (root / "train" / f"{stem}.jpg").write_bytes((data[0] / "train" / f"{stem}.jpg").read_bytes())
        (root / "train_masks" / f"{stem}_mask.gif").write_bytes(
            (data[0] / "train_masks" / f"{stem}_mask.gif").read_bytes())
    bad = root / "train" / f"{data[1][1]}.jpg"
    bad.write_bytes(b"not a jpeg")
    argv = ["--model", str(models / "unet.onnx"), "--data", str(root), "--batchsize", "2", "--size", str(SIZE),
            "--workers", "1", "--quiet", "--result", str(tmp_path / "r.txt")]
    assert run_cli(main, argv) == 2
    assert f"error: 1 unreadable image(s), left out of the scores: {bad}" in capsys.readouterr().err
    names = [r["name"] for r in json.loads((tmp_path / "r.json").read_text())["per_image"]]
    assert names == [data[1][0], data[1][2]]


def test_user_errors_exit_2(models, data, tmp_path, capsys):
    def error(*argv):
        status = run_cli(main, ["--result", str(tmp_path / "r.txt"), "--size", str(SIZE), "--quiet", *map(str, argv)])
        assert status == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ")
        return err[-1]

    onnx = models / "unet.onnx"
    assert "data folder not found" in error("--model", onnx, "--data", tmp_path / "absent")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    assert "mask folder not found" in error("--model", onnx, "--data", tmp_path / "empty")
    (tmp_path / "empty" / "train_masks").mkdir()
    assert "no images" in error("--model", onnx, "--data", tmp_path / "empty")
    (tmp_path / "empty" / "train" / "a_01.jpg").write_bytes((data[0] / "train" / f"{data[1][0]}.jpg").read_bytes())
    missing = tmp_path / "empty" / "train_masks" / "a_01_mask.gif"
    assert f"{missing}: mask not found" in error("--model", onnx, "--data", tmp_path / "empty")
    missing.write_bytes(b"not a gif")
    assert f"{missing}: cannot read the mask" in error("--model", onnx, "--data", tmp_path / "empty")
    assert "precision int8 is not available on the torch backend" in error(
        "--model", models / "unet.pth", "--data", data[0], "--precision", "int8")
    assert "precision fp16 is not available on the onnxruntime backend" in error(
        "--model", onnx, "--data", data[0], "--precision", "fp16")
    assert "the model computes in fp32" in error("--model", onnx, "--data", data[0], "--precision", "int8")
    assert "--cuda_graph is an option of the torch backend" in error("--model", onnx, "--data", data[0],
                                                                     "--cuda_graph")
    assert "runs a backend in this process, not acl" in error("--model", tmp_path / "m.om", "--data", data[0])
    assert ".json" in error("--model", onnx, "--data", data[0], "--result", tmp_path / "r.json")
    assert "--size" in error("--model", onnx, "--data", data[0], "--size", "64")
    assert not (tmp_path / "r.txt").exists()


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unet_infer.stream", "--model", "m.onnx", "--data",
                           str(tmp_path / "absent"), "--result", str(tmp_path / "r.txt")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'absent'}: data folder not found " \
                                                   f"(it must hold train/ and train_masks/)"
    help_text = subprocess.run([sys.executable, "-m", "unet_infer.stream", "--help"], cwd=REPO,
                               capture_output=True, text=True).stdout
    assert "python3 -m unet_infer.stream --model UNet_bs8.onnx --data ./carvana --batchsize 8" in help_text


def test_prefetcher_keeps_the_order_and_a_bound():
    tasks = [-5, 3, -1, 8, -2, 0, 7]
    with Prefetcher(abs, tasks, workers=2, ahead=3) as prefetch:
        got = []
        for value in prefetch:
            assert len(prefetch.queue) <= 3
            got.append(value)
    assert got == [abs(t) for t in tasks]


@pytest.mark.parametrize("total", [1, 2, 3, 5, 7, 8, 9, 12, 30])
def test_extremes_are_the_reports_choice(total):
    """Whatever the count and the ties, the masks kept are those of report.select_extremes."""
    rng = np.random.default_rng(total)
    for _ in range(20):
        ious = rng.choice([0.1, 0.5, 0.9, 1.0], total) if rng.random() < 0.5 else rng.random(total)
        names = [f"img{i}" for i in rng.permutation(total)]
        extremes = Extremes(n=4)
        for i, (name, iou) in enumerate(zip(names, ious)):
            bits = (i >> np.arange(6)) & 1  # the image's index, written into its mask
            extremes.offer(name, float(iou), pack_mask(bits.astype(bool).reshape(1, 6)))
        worst, best = select_extremes([{"name": n, "iou": float(v)} for n, v in zip(names, ious)], 4)
        chosen, masks = extremes.masks()
        assert chosen == [r["name"] for r in worst + best] and set(masks) == set(chosen)
        for name, packed in masks.items():
            mask = unpack_mask(packed)
            assert mask.shape == (1, 6) and int((mask[0] << np.arange(6)).sum()) == names.index(name)
        assert len(extremes.kept) <= 12


def test_write_masks_replaces_only_this_runs_names(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "b.png").write_bytes(b"old")
    (folder / "other.png").write_bytes(b"not ours")
    write_masks(folder, {"a": np.eye(3, dtype=bool)}, ["a", "b"])
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "other.png"]
    with Image.open(folder / "a.png") as img:
        assert img.mode == "L" and np.array_equal(np.asarray(img), np.eye(3, dtype=np.uint8) * 255)


def test_default_masks_folder():
    args = argparse.Namespace(masks=None, summary=None)
    assert masks_folder(args) is None
    args.summary = "w/result/bs8_summary.json"
    assert masks_folder(args) == Path("w/result/bs8_masks")
    args.summary = "w/s.json"
    assert masks_folder(args) == Path("w/s_masks")
    args.masks = "x"
    assert masks_folder(args) == Path("x")


def test_a_result_inside_the_data_folder_is_refused(models, data, tmp_path, capsys):
    status = run_cli(main, ["--model", str(models / "unet.onnx"), "--data", str(data[0]), "--size", str(SIZE),
                            "--quiet", "--result", str(data[0] / "train" / "r.txt")])
    assert status == 2 and "would overwrite the input" in capsys.readouterr().err
    assert not (data[0] / "train" / "r.txt").exists()
