"""The synthetic Carvana generator: file layout and formats, determinism, and how hard it is."""

import hashlib
import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from unet_infer.cli import run_cli
from unet_infer.sample import (MAX_VIEWS, encode_jpeg, encode_mask_gif, generate, main, make_car,
                               render_view)

ROOT = Path(__file__).resolve().parents[1]
W, H = 320, 214          # Carvana's aspect ratio, small


def files(folder):
    return sorted(p.name for p in Path(folder).iterdir())


def read_mask(path):
    with Image.open(path) as img:
        assert img.format == "GIF" and img.mode == "P"
        return np.array(img)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("carvana")
    return out, generate(out, cars=2, seed=3, width=W, height=H, workers=1)


def test_layout_and_formats(dataset):
    out, pairs = dataset
    assert len(pairs) == 2 * MAX_VIEWS
    assert files(out) == ["train", "train_masks"]
    assert files(out / "train") == sorted(p.name for p, _ in pairs)
    assert files(out / "train_masks") == sorted(m.name for _, m in pairs)
    ids = []
    for k, (image, mask) in enumerate(pairs):
        match = re.fullmatch(r"([0-9a-f]{12})_(\d\d)\.jpg", image.name)
        assert match, image.name
        assert int(match.group(2)) == k % MAX_VIEWS + 1
        assert mask == out / "train_masks" / f"{image.stem}_mask.gif"
        ids.append(match.group(1))
        with Image.open(image) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (W, H))
        values = read_mask(mask)
        assert values.shape == (H, W)
        assert set(np.unique(values)) == {0, 1}
    assert len(set(ids)) == 2 and ids[0] == make_car(3, 0).car_id


def test_mask_is_the_rendered_silhouette(dataset):
    """The GIF holds exactly render_view's mask; the car covers a sensible share of the photo."""
    _, pairs = dataset
    car = make_car(3, 1)
    for view in (1, 5, 7, 12):
        rgb, mask = render_view(car, view, W, H)
        assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
        assert np.array_equal(read_mask(pairs[MAX_VIEWS + view - 1][1]), mask)
        assert 0.05 < mask.mean() < 0.6


def test_same_seed_same_bytes_any_workers(tmp_path, dataset):
    out, pairs = dataset
    again = generate(tmp_path / "a", cars=2, seed=3, views=3, width=W, height=H, workers=2)
    for k, (image, mask) in enumerate(again):
        ref_image, ref_mask = pairs[(k // 3) * MAX_VIEWS + k % 3]
        assert image.name == ref_image.name
        assert image.read_bytes() == ref_image.read_bytes()
        assert mask.read_bytes() == ref_mask.read_bytes()
    other = generate(tmp_path / "b", cars=1, seed=4, views=1, width=W, height=H, workers=1)
    assert other[0][0].name != pairs[0][0].name
    assert other[0][0].read_bytes() != pairs[0][0].read_bytes()


def test_render_view_is_pure():
    car = make_car(7, 2)
    first, second = render_view(car, 3, W, H), render_view(car, 3, W, H)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[1], render_view(car, 4, W, H)[1])


def test_mask_gif_keeps_indices():
    for mask in (np.zeros((5, 7), np.uint8), np.ones((5, 7), np.uint8), np.eye(5, 7, dtype=np.uint8)):
        assert np.array_equal(read_mask(io.BytesIO(encode_mask_gif(mask))), mask)


def test_shadow_is_dark_and_not_in_the_mask():
    for index in range(3):
        car = make_car(11, index)
        for view in (1, 5):
            rgb, mask = render_view(car, view, W, H)
            near_car = np.asarray(Image.fromarray(mask * 255).filter(ImageFilter.MaxFilter(5))) > 0
            lum = rgb.mean(axis=2)
            background = np.median(lum[~near_car])
            dark = (lum < background - 60) & ~near_car
            assert dark.mean() > 0.005, (index, view)


def best_threshold_iou(rgb, mask):
    """Best IoU of any threshold on the distance from the image's median colour (an oracle)."""
    distance = np.linalg.norm(rgb.astype(np.float32) - np.median(rgb.reshape(-1, 3), axis=0), axis=2)
    truth = mask.astype(bool)
    best = 0.0
    for t in np.linspace(1, distance.max(), 100):
        pred = distance > t
        best = max(best, (pred & truth).sum() / (pred | truth).sum())
    return best


def test_colour_threshold_does_not_solve_it():
    scores = []
    for index in range(6):
        car = make_car(0, index)
        for view in (2, 5, 12):
            rgb, mask = render_view(car, view, W, H)
            photo = np.asarray(Image.open(io.BytesIO(encode_jpeg(rgb, car.quality))))
            scores.append(best_threshold_iou(photo, mask))
    assert np.mean(scores) < 0.9, scores
    assert max(scores) < 0.97, scores


def test_existing_files_overwritten_never_deleted(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    (train / "notes.txt").write_text("keep me")
    name = f"{make_car(0, 0).car_id}_01.jpg"
    (train / name).write_bytes(b"stale")
    generate(tmp_path, cars=1, seed=0, views=1, width=96, height=64, workers=1)
    assert (train / "notes.txt").read_text() == "keep me"
    with Image.open(train / name) as img:
        assert img.format == "JPEG" and img.size == (96, 64)
    assert files(train) == sorted(["notes.txt", name])


def sha(data):
    return hashlib.sha256(data).hexdigest()[:16]


def test_output_is_pinned(tmp_path):
    """The same seed gives the same bytes as before the generator became a package (Pillow 13)."""
    car = make_car(5, 1)
    assert (car.car_id, car.kind, car.quality, car.spokes) == ("d1b8de21c33e", "hatch", 88, 7)
    assert car.length == pytest.approx(4.24794, abs=1e-6)
    rgb, mask = render_view(car, 3, 96, 64)
    assert (sha(rgb.tobytes()), sha(mask.tobytes()), int(mask.sum())) == ("27a0ee39bed10888", "47d0249d20daca5e", 1279)
    (image, gif), = generate(tmp_path, cars=1, seed=5, views=1, width=96, height=64, workers=1)
    assert (image.name, sha(image.read_bytes()), sha(gif.read_bytes())) == (
        "a8e5b8abeeab_01.jpg", "8a680d99c665cb82", "e660812aaf409768")


def test_cli(tmp_path, capsys):
    assert main(["--output", str(tmp_path / "a"), "--cars", "1", "--seed", "5", "--views", "2",
                 "--width", "128", "--height", "86", "--workers", "1", "--quiet"]) is None
    assert len(files(tmp_path / "a" / "train")) == 2 and len(files(tmp_path / "a" / "train_masks")) == 2
    assert capsys.readouterr().out == (f"wrote 2 images to {tmp_path / 'a' / 'train'} "
                                       f"and 2 masks to {tmp_path / 'a' / 'train_masks'}\n")
    assert main(["--out", str(tmp_path / "b"), "--cars", "1", "--seed", "5", "--views", "2",  # the old spelling
                 "--width", "128", "--height", "86", "--workers", "1", "--quiet"]) is None
    for sub in ("train", "train_masks"):
        assert files(tmp_path / "b" / sub) == files(tmp_path / "a" / sub)
        assert all((tmp_path / "b" / sub / n).read_bytes() == (tmp_path / "a" / sub / n).read_bytes()
                   for n in files(tmp_path / "a" / sub))
    capsys.readouterr()
    for bad, message in ((["--cars", "0"], "argument --cars: 0 is below 1"),
                         (["--seed", "-1"], "argument --seed: -1 is below 0"),
                         (["--width", "63"], "argument --width: 63 is below 64"),
                         (["--views", "0"], "argument --views: 0 is not in 1..16"),
                         (["--views", "17"], "argument --views: 17 is not in 1..16")):
        assert run_cli(main, ["--output", str(tmp_path / "c"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_script_help_and_error(tmp_path):
    run = [sys.executable, "-m", "unet_infer.sample"]
    shown = subprocess.run(run + ["--help"], cwd=ROOT, capture_output=True, text=True)
    assert shown.returncode == 0
    assert "python3 -m unet_infer.sample --output ./carvana --cars 4 --seed 0" in shown.stdout
    assert "--output DIR, --out DIR" in shown.stdout and "(default: 4)" in shown.stdout
    assert "(default: one per CPU)" in shown.stdout and "(default: None)" not in shown.stdout
    bad = subprocess.run(run + ["--out", str(tmp_path), "--views", "17"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: argument --views: 17 is not in 1..16")
