"""predict: masks at the photo's own size, cut-outs, the submission RLE, Dice, thresholds, bad files."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from tiny_unet import varied_unet
from unet_infer.cli import run_cli
from unet_infer.data import image_to_array, load_label
from unet_infer.export import pth_to_onnx
from unet_infer.metrics import iou_dice, logits_to_mask
from unet_infer.model import UNet
from unet_infer.predict import PREDICT_WEIGHTS, cutout, mask_at, main, probabilities, rle_encode, submission_text
from unet_infer.sample import generate

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64  # the tiny model's input size (the bundled-weights test runs at 572)

# ---- RLE ----


def rle_decode(text, shape):
    """The bool mask of ``shape`` that ``text`` (``start length ...``, starts 1-based) encodes."""
    numbers = [int(n) for n in text.split()]
    flat = np.zeros(int(np.prod(shape)), bool)
    for start, length in zip(numbers[0::2], numbers[1::2]):
        flat[start - 1:start - 1 + length] = True
    return flat.reshape(shape)


def read_submission(path):
    """``[(img, rle_mask), ...]`` of a submission CSV, under its header."""
    with open(path, newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == ["img", "rle_mask"]
    return [tuple(line) for line in lines[1:]]


@settings(max_examples=200, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_rle_round_trip(mask):
    text = rle_encode(mask)
    assert np.array_equal(rle_decode(text, mask.shape), mask)
    numbers = [int(n) for n in text.split()]
    assert sum(numbers[1::2]) == mask.sum()  # lengths add up to the car pixels
    assert all(s >= 1 for s in numbers[0::2])


def test_rle_is_one_based_row_by_row_and_empty_or_full():
    mask = np.array([[0, 1, 1, 0], [1, 1, 0, 1]], bool)  # flat: 0 1 1 0 1 1 0 1
    assert rle_encode(mask) == "2 2 5 2 8 1"
    assert rle_encode(np.zeros((3, 5), bool)) == ""
    assert rle_encode(np.ones((3, 5), bool)) == "1 15"
    assert not rle_decode("", (3, 5)).any()
    assert rle_decode("1 15", (3, 5)).all()


def test_submission_csv_round_trip(tmp_path):
    rows = [("0004d4463b50_01.jpg", "1 3 10 2"), ("empty.png", ""), ("a,b.jpg", "2 1")]
    path = tmp_path / "sub.csv"
    path.write_text(submission_text(rows))
    assert path.read_text().startswith("img,rle_mask\n0004d4463b50_01.jpg,1 3 10 2\nempty.png,\n")
    assert read_submission(path) == rows
    assert submission_text([]) == "img,rle_mask\n"


# ---- thresholds and resizing ----


def test_threshold_0_5_at_the_model_size_is_logit_above_0():
    logits = np.array([[[0.0, 1e-30, -1e-30, 3.0], [-3.0, np.nan, 1e-7, -1e-7]]], np.float32)
    expected = np.array([[False, True, False, True], [False, False, True, False]])
    assert np.array_equal(mask_at(logits, (4, 2), 0.5), expected)
    assert np.array_equal(mask_at(logits, (4, 2), 0.5), logits_to_mask(logits))
    # float32 sigmoid rounds 1e-30 to exactly 0.5: the log-odds keep it on the car side
    assert probabilities(logits)[0, 1] == np.float32(0.5)


def test_two_class_logits_are_the_softmax_of_class_1():
    l0 = np.array([[0.0, 2.0], [1.0, -1.0]], np.float32)
    l1 = np.array([[1.0, 2.0], [0.5, 3.0]], np.float32)
    logits = np.stack([l0, l1])
    soft = np.exp(l1) / (np.exp(l0) + np.exp(l1))
    assert np.allclose(probabilities(logits), soft, atol=1e-6)
    assert np.array_equal(mask_at(logits, (2, 2), 0.5), l1 > l0)  # a tie (2, 2) is background
    assert np.array_equal(mask_at(logits, (2, 2), 0.6), soft > 0.6)


def test_a_pixel_exactly_at_the_threshold_is_background_after_resizing():
    logit = np.full((1, 8, 8), np.log(0.25 / 0.75), np.float32)
    prob = np.asarray(Image.fromarray(probabilities(logit)).resize((13, 11), Image.Resampling.BILINEAR))
    assert prob.shape == (11, 13)
    at = float(prob[0, 0])  # whatever float32 made of sigmoid(ln(1/3))
    assert np.all(prob == np.float32(at))
    assert not mask_at(logit, (13, 11), at).any()
    assert mask_at(logit, (13, 11), np.nextafter(at, 0.0)).all()


def test_resizing_is_of_probabilities_then_threshold_not_nearest():
    logits = np.full((1, 4, 4), -20.0, np.float32)
    logits[0, 1, 1] = 20.0  # one sure car pixel among sure background
    mask = mask_at(logits, (16, 16), 0.5)
    nearest = np.array(Image.fromarray(logits_to_mask(logits)).resize((16, 16), Image.Resampling.NEAREST))
    assert 0 < mask.sum() < nearest.sum()  # bilinear probabilities cross 0.5 inside the nearest block
    bilinear = Image.fromarray(probabilities(logits)).resize((16, 16), Image.Resampling.BILINEAR)
    assert np.array_equal(mask, np.asarray(bilinear) > 0.5)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (1, 6, 6), elements=st.floats(-8, 8, width=32)),
       st.floats(0.01, 0.99), st.floats(0.01, 0.99))
def test_a_higher_threshold_keeps_a_subset(logits, t1, t2):
    low, high = sorted((t1, t2))
    for size in ((6, 6), (9, 7)):
        assert not (mask_at(logits, size, high) & ~mask_at(logits, size, low)).any()


def test_cutout_alpha_is_the_mask():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mask = np.random.default_rng(1).random((5, 7)) > 0.5
    rgba = cutout(pixels, mask)
    assert rgba.shape == (5, 7, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], pixels)
    assert np.array_equal(rgba[..., 3] == 255, mask) and set(np.unique(rgba[..., 3])) <= {0, 255}


# ---- the command, with a tiny model ----


def write_photo(path, mode, width, height, seed):
    """A smooth photo of ``mode`` and odd size, saved with PIL (the suffix picks the format)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width]).reshape(2, 1, 1)
    rgb = np.stack([0.5 + 0.5 * np.sin(rng.uniform(2, 9) * x + rng.uniform(2, 9) * y + rng.uniform(0, 6))
                    for _ in range(3)], axis=-1)
    img = Image.fromarray((rgb * 255).round().astype(np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(img.convert("L"), np.uint16) * 257))
    elif mode == "RGBA":
        img = img.convert("RGBA")
        img.putalpha(Image.fromarray((x * 255).astype(np.uint8)))
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path)
    return Path(path)


PHOTOS = {  # name -> (mode, width, height)
    "rgb.jpg": ("RGB", 37, 23), "gray.png": ("L", 41, 29), "rgba.png": ("RGBA", 33, 51),
    "palette.png": ("P", 25, 17), "gray_alpha.png": ("LA", 19, 31), "deep.png": ("I;16", 27, 21),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos") / "photos"
    folder.mkdir()
    for seed, (name, (mode, width, height)) in enumerate(PHOTOS.items()):
        write_photo(folder / name, mode, width, height, seed)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, photos):
    """A width-4 UNet checkpoint whose logits on the photos spread around 0 (std 2, median 0)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    model = varied_unet()
    x = torch.from_numpy(np.stack([image_to_array(Image.open(p), SIZE) for p in sorted(photos.iterdir())]))
    with torch.inference_mode():
        model.outc.conv.weight *= 2.0 / float(model(x).std())
        model.outc.conv.bias -= float(model(x).median())
    torch.save(model.state_dict(), path)
    return path


def predict(*argv, size=SIZE):
    """The command in this process: (exit status)."""
    return run_cli(main, [*map(str, argv), "--size", str(size), "--threads", "1", "--workers", "1", "--quiet"])


@pytest.fixture(scope="module")
def run(tmp_path_factory, photos, tiny):
    """One run over the folder of photos of every mode: masks, cut-outs and the submission."""
    out = tmp_path_factory.mktemp("run")
    status = predict("--input", photos, "--output", out / "masks", "--weights", tiny, "--cutout",
                     "--rle", out / "submission.csv", "--batchsize", 4)
    assert status == 0
    return out


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_outputs_have_the_photo_size_and_modes(run, photos, name):
    stem = Path(name).stem
    with Image.open(photos / name) as img:
        size, rgb = img.size, np.asarray(img.convert("RGB"))
    with Image.open(run / "masks" / f"{stem}_mask.png") as mask_img:
        assert (mask_img.mode, mask_img.size) == ("L", size)
        mask = np.asarray(mask_img)
    assert set(np.unique(mask)) <= {0, 255}
    with Image.open(run / "masks" / f"{stem}_cutout.png") as cut:
        assert (cut.mode, cut.size) == ("RGBA", size)
        rgba = np.asarray(cut)
    assert np.array_equal(rgba[..., 3], mask)  # alpha = mask
    assert np.array_equal(rgba[..., :3], rgb)  # the photo's own pixels


def test_submission_rows_decode_to_the_masks(run, photos):
    rows = read_submission(run / "submission.csv")
    assert [name for name, _ in rows] == sorted(PHOTOS, key=lambda n: n.lower())  # with extensions
    cars = 0
    for name, text in rows:
        mask = np.asarray(Image.open(run / "masks" / f"{Path(name).stem}_mask.png")) > 0
        assert np.array_equal(rle_decode(text, mask.shape), mask)
        cars += mask.sum()
    assert cars > 0  # the median-centred model marks some pixels car and some not


def test_the_model_size_mask_equals_the_scoring_stage(tmp_path, tiny):
    photo = write_photo(tmp_path / "square.png", "RGB", 572, 572, 7)
    assert predict("--input", photo, "--output", tmp_path / "out", "--weights", tiny, size=572) == 0
    model = UNet(width=4).eval()
    model.load_state_dict(torch.load(tiny))
    with torch.inference_mode():
        logits = model(torch.from_numpy(image_to_array(Image.open(photo), 572)[None])).numpy()[0]
    mask = np.asarray(Image.open(tmp_path / "out" / "square_mask.png")) > 0
    # torch batch 1 vs batch 4 and BN folding may move a logit by 1e-6: compare off the boundary
    sure = np.abs(logits[0]) > 1e-4
    assert np.array_equal(mask[sure], logits_to_mask(logits)[sure])


def test_onnx_model_gives_the_same_masks(tmp_path, run, photos, tiny):
    onnx = tmp_path / "tiny.onnx"
    pth_to_onnx(tiny, onnx, size=SIZE, check=False)
    assert predict("--input", photos, "--output", tmp_path / "out", "--model", onnx) == 0
    for name in PHOTOS:
        stem = Path(name).stem
        ours = np.asarray(Image.open(tmp_path / "out" / f"{stem}_mask.png"))
        theirs = np.asarray(Image.open(run / "masks" / f"{stem}_mask.png"))
        assert np.mean(ours == theirs) > 0.99


AVX2 = "avx avx2 fma sse4_2"  # an AVX2-only CPU: backend=auto takes onnxruntime (tests/test_auto.py)


def test_the_checkpoint_runs_on_what_auto_takes_and_the_line_says_which(tmp_path, photos, tiny, play_cpu, caplog,
                                                                       capsys):
    """Without --backend the checkpoint runs where backend=auto runs (exported to ONNX for it, in a
    temporary folder), with the same masks as torch's; the auto line and the closing line say which."""
    from unet_infer import backends
    play_cpu(AVX2)
    want = backends.default_backend(flags=AVX2.split())
    caplog.set_level("INFO")
    out = tmp_path / "out"
    status = run_cli(main, ["--input", str(photos), "--output", str(out), "--weights", str(tiny), "--size", str(SIZE),
                            "--threads", "1", "--workers", "1"])
    assert status == 0
    said = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"backend=auto: {want} fp32 (CPU flags from") for line in said), said
    assert f"(tiny.pth on {want} fp32, batch 3; " in capsys.readouterr().out  # 6 photos at the default 4: two runs of 3
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{Path(name).stem}_mask.png" for name in PHOTOS)
    assert predict("--input", photos, "--output", tmp_path / "torch", "--weights", tiny, "--backend", "torch") == 0
    assert "(tiny.pth on torch fp32, batch 3; " in capsys.readouterr().out
    for name in PHOTOS:
        ours = np.asarray(Image.open(out / f"{Path(name).stem}_mask.png"))
        theirs = np.asarray(Image.open(tmp_path / "torch" / f"{Path(name).stem}_mask.png"))
        assert np.mean(ours == theirs) > 0.99


def test_a_dynamic_batch_runs_the_photos_it_has_spread_evenly(tmp_path, photos, tiny, capsys):
    from unet_infer.backends import get_backend
    from unet_infer.predict import batch_to_ask
    torch_cls = get_backend("torch")  # a checkpoint: any batch
    assert [batch_to_ask(torch_cls, tiny, 8, n) for n in (1, 3, 8, 9, 16, 17)] == [1, 3, 8, 5, 8, 6]
    assert [batch_to_ask(torch_cls, tiny, None, n) for n in (1, 5, 6, 8)] == [1, 3, 3, 4]

    class Fixed:
        @staticmethod
        def fixed_batchsize(path):
            return 4
    assert batch_to_ask(Fixed, tiny, None, 1) is None and batch_to_ask(Fixed, tiny, 8, 1) == 8  # the load refuses 8

    one = photos / "rgb.jpg"
    assert predict("--input", one, "--output", tmp_path / "one", "--weights", tiny, "--backend", "torch",
                   "--batchsize", 8) == 0
    assert "predict: 1 of 1 photos" in (line := capsys.readouterr().out) and "(tiny.pth on torch fp32, batch 1; " in line


def test_labels_give_the_mean_dice_at_the_photo_size(tmp_path, photos, tiny, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    for name, (_, width, height) in PHOTOS.items():
        mask = np.zeros((height, width), np.uint8)
        mask[height // 4:, : width // 2] = 1
        gif = Image.fromarray(mask, "P")
        gif.putpalette([0, 0, 0, 255, 255, 255])
        gif.save(labels / f"{Path(name).stem}_mask.gif")
    assert predict("--input", photos, "--output", tmp_path / "out", "--weights", tiny, "--labels", labels) == 0
    rows = list(csv.reader((tmp_path / "out" / "dice.csv").open()))
    assert rows[0] == ["img", "dice"] and rows[-1][0] == "mean" and len(rows) == len(PHOTOS) + 2
    expected = {}
    for name in PHOTOS:
        pred = np.asarray(Image.open(tmp_path / "out" / f"{Path(name).stem}_mask.png")) > 0
        expected[name] = iou_dice(pred, load_label(labels / f"{Path(name).stem}_mask.gif", size=None))[1]
    assert {r[0]: float(r[1]) for r in rows[1:-1]} == pytest.approx(expected, abs=1e-6)
    mean = np.mean(list(expected.values()))
    assert float(rows[-1][1]) == pytest.approx(mean, abs=1e-6)
    assert f"Dice: {mean:.6f}" in capsys.readouterr().out

    # a label of another size: the masks are still written, the run ends in one error line
    Image.new("P", (5, 5)).save(labels / "gray_mask.gif")
    assert predict("--input", photos, "--output", tmp_path / "again", "--weights", tiny, "--labels", labels) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 1 photo(s) not scored") and "gray_mask.gif: 5 x 5, the photo is 41 x 29" in err
    assert len(list((tmp_path / "again").glob("*_mask.png"))) == len(PHOTOS)


def test_a_bad_file_among_good_ones(tmp_path, photos, tiny, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("rgb.jpg", "gray.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.jpg").write_text("not a picture")
    (folder / "cut.png").write_bytes((photos / "rgba.png").read_bytes()[:300])  # truncated
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier_mask.png").write_bytes(b"from an earlier run")
    assert predict("--input", folder, notes, "--output", out, "--weights", tiny, "--rle", out / "sub.csv") == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 3 unreadable photo(s) skipped") and last.endswith("(the others were written)")
    for bad in ("broken.jpg", "cut.png", "notes.txt"):
        assert bad in last
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["earlier_mask.png", "gray_mask.png", "rgb_mask.png", "sub.csv"]
    assert (out / "earlier_mask.png").read_bytes() == b"from an earlier run"
    assert [name for name, _ in read_submission(out / "sub.csv")] == ["gray.png", "rgb.jpg"]


def test_refusals_come_before_any_work(tmp_path, photos, tiny, capsys):
    same = tmp_path / "same"
    same.mkdir()
    write_photo(same / "car.jpg", "RGB", 20, 20, 0)
    write_photo(same / "car.png", "RGB", 20, 20, 1)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = {
        "is an input folder": ["--input", photos, "--output", photos],
        "is a file; --output takes a folder": ["--input", photos, "--output", a_file],
        "have the same name car": ["--input", same, "--output", tmp_path / "o1"],
        f"mask not found (nor deep_mask.png; the label of {photos / 'deep.png'}); {len(PHOTOS) - 1} more of the "
        f"{len(PHOTOS)} images have no mask; leave out --labels": ["--input", photos, "--output", tmp_path / "o2",
                                                                   "--labels", tmp_path],
        "predict runs a backend in this process, not acl": ["--input", photos, "--output", tmp_path / "o3",
                                                            "--backend", "acl"],
        "runs it from a quantised model, not from a checkpoint": ["--input", photos, "--output", tmp_path / "o6",
                                                                  "--backend", "onnxruntime", "--precision", "int8"],
        "would overwrite the input": ["--input", photos, "--output", tmp_path / "o4", "--rle", photos / "rgb.jpg"],
        "no such file or folder": ["--input", tmp_path / "nowhere", "--output", tmp_path / "o5"],
    }
    for expected, argv in cases.items():
        weights = [] if "--backend" in argv else ["--weights", tiny]
        assert predict(*argv, *weights) == 2, expected
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and expected in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "same"]
    assert sorted(p.name for p in photos.iterdir()) == sorted(PHOTOS)


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "1.5", "nan", "half"])
def test_threshold_outside_0_1_is_refused(tmp_path, value, capsys):
    assert run_cli(main, ["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--threshold", value]) == 2
    assert "--threshold" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_help_shows_the_examples_and_defaults():
    proc = subprocess.run([sys.executable, "-m", "unet_infer.predict", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert text.startswith("usage: python3 -m unet_infer.predict")
    for shown in ("python3 -m unet_infer.predict --input photos/ --output masks/ --cutout",
                  "(default: 0.5)", "(default: 572)", "weights/unet_carvana.pth"):
        assert shown in text
    assert "--input photos/ --output out --batchsize 8" in text  # a folder: not one photo padded to a batch of 8
    assert "--input car.jpg" not in text


# ---- the bundled weights, end to end ----


def test_bundled_weights_cut_out_a_generated_car(tmp_path, capsys):
    """One generated car at 961 x 641 (odd sizes): the mask is the car (Dice >= 0.95 at that size)."""
    (image, label), = generate(tmp_path / "data", cars=1, seed=5, views=1, width=961, height=641, workers=1)
    out = tmp_path / "out"
    status = run_cli(main, ["--input", str(image), "--output", str(out), "--cutout", "--rle", str(out / "sub.csv"),
                            "--labels", str(label.parent), "--threads", "2", "--workers", "1", "--quiet"])
    assert status == 0
    assert PREDICT_WEIGHTS.is_file()
    mask = np.asarray(Image.open(out / f"{image.stem}_mask.png")) > 0
    assert mask.shape == (641, 961)
    assert iou_dice(mask, load_label(label, size=None))[1] >= 0.95
    (name, text), = read_submission(out / "sub.csv")
    assert name == image.name and np.array_equal(rle_decode(text, mask.shape), mask)
    assert np.array_equal(np.asarray(Image.open(out / f"{image.stem}_cutout.png"))[..., 3] > 0, mask)
    printed = capsys.readouterr().out
    assert "Dice: 0.9" in printed and "(unet_carvana_predict.pth on " in printed


def test_tta_averages_the_logits_of_the_photo_and_its_mirror():
    """FlipAveraged over a backend whose output is its input times a left-to-right ramp: the mean of
    x * ramp and the mirrored run mirrored back is x * (ramp + reversed ramp) / 2, exactly."""
    from unet_infer.predict import FlipAveraged
    ramp = np.arange(1, 6, dtype=np.float32)

    class Ramp:
        async_requests, async_upload, precision = 2, True, "fp32"

        def upload(self, *arrays, wait=True):
            return list(arrays)

        def run(self, x):
            self.out = getattr(self, "out", np.empty_like(x))  # one output buffer, reused by every run
            np.multiply(x, ramp, out=self.out)
            return [self.out]

        def download(self, outputs):
            return outputs

    x = np.random.default_rng(0).random((2, 1, 3, 5)).astype(np.float32)
    flipped = FlipAveraged(Ramp())
    assert flipped.async_requests == 0 and not flipped.async_upload
    (out,) = flipped.download(flipped.run(*flipped.upload(x)))
    np.testing.assert_allclose(out, x * (ramp + ramp[::-1]) / 2, rtol=1e-6)


def test_tta_runs_on_a_checkpoint_and_an_onnx_model_alike(tmp_path, photos, tiny, capsys):
    onnx = tmp_path / "tiny.onnx"
    pth_to_onnx(tiny, onnx, size=SIZE, check=False)
    assert predict("--input", photos, "--output", tmp_path / "pth", "--weights", tiny, "--backend", "torch",
                   "--tta") == 0
    assert ", flip TTA; " in capsys.readouterr().out
    assert predict("--input", photos, "--output", tmp_path / "onnx", "--model", onnx, "--tta") == 0
    for name in PHOTOS:
        masks = [np.asarray(Image.open(tmp_path / kind / f"{Path(name).stem}_mask.png")) for kind in ("pth", "onnx")]
        assert np.mean(masks[0] == masks[1]) > 0.99
