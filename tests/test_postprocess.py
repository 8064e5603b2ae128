"""Stage 6: scoring outputs against masks, end to end and piece by piece."""

import json
import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import postprocess_unet_pth
from unet_infer.cli import UserError, run_cli
from unet_infer.formats import bin_nbytes, write_bin
from unet_infer.data import load_label
from unet_infer.postprocess import _score_job, find_outputs, score_folder
from unet_infer.results import iou_line, write_results

S = 64


def score_file(out, label, size):
    """(IoU, Dice) of one output file against its mask, as the scoring worker gives them."""
    record = _score_job((out.stem, str(out), str(label), size))
    return record["iou"], record["dice"]


def label_of(mask_path, size=S):
    """The label as the definition says: palette indices, NEAREST to S x S, car == 1."""
    return np.array(Image.open(mask_path).resize((size, size), Image.Resampling.NEAREST)) == 1


def logits_for(mask, classes=1):
    """Logits whose prediction is exactly ``mask``."""
    one = np.where(mask, 4.0, -4.0).astype(np.float32)
    return one[None] if classes == 1 else np.stack([-one, one])


@pytest.fixture
def outputs(carvana, tmp_path):
    """result/bs8/<stem>.bin with perfect logits for every mask."""
    out = tmp_path / "result" / "bs8"
    out.mkdir(parents=True)
    for stem in carvana.stems:
        write_bin(out / f"{stem}.bin", logits_for(label_of(carvana.mask(stem))))
    return out


def run(argv):
    return run_cli(postprocess_unet_pth.main, argv + ["--quiet", "--size", str(S)])


def test_perfect_outputs_end_to_end(carvana, outputs, tmp_path, capsys):
    result = tmp_path / "res" / "result.txt"
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={result}"]) == 0
    out = capsys.readouterr().out
    n = len(carvana.stems)
    assert out == (f"IOU Average: 1.000000 (ModelZoo figure, images with IoU >= 0.5: 1.000000; "
                   f"Dice 1.000000; {n} images)\n")
    lines = result.read_text().splitlines()
    assert lines[0] == "name IoU Dice"
    assert lines[1:] == [f"{s} 1.000000 1.000000" for s in carvana.stems]
    summary = json.loads(result.with_suffix(".json").read_text())
    assert summary["n_images"] == n and summary["mean_iou"] == summary["mean_dice"] == 1.0
    assert summary["modelzoo_iou"] == 1.0 and summary["n_below_0_5"] == 0
    assert [r["name"] for r in summary["per_image"]] == carvana.stems


def test_a_mask_without_its_output_is_not_scored(carvana, outputs, tmp_path):
    """An image removed from the data keeps its mask: the outputs decide what is scored."""
    gone = carvana.stems[0]
    (outputs / f"{gone}.bin").unlink()
    result = tmp_path / "result.txt"
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={result}"]) == 0
    assert [line.split()[0] for line in result.read_text().splitlines()[1:]] == carvana.stems[1:]


def test_known_perturbation(carvana, outputs):
    stem = carvana.stems[0]
    label = label_of(carvana.mask(stem))
    pred = label.copy()
    background = np.flatnonzero(~label)[:50]
    car = np.flatnonzero(label)[:30]
    pred.flat[background] = True   # 50 false positives
    pred.flat[car] = False         # 30 false negatives
    write_bin(outputs / f"{stem}.bin", logits_for(pred))
    n_label = int(label.sum())
    both = n_label - 30
    expected_iou = both / (n_label + 50)
    expected_dice = 2 * both / (n_label + n_label + 50 - 30)
    got = score_file(outputs / f"{stem}.bin", carvana.mask(stem), S)
    assert got == pytest.approx((expected_iou, expected_dice))


def test_two_class_outputs_and_runner_names(carvana, outputs):
    for stem in carvana.stems[:2]:
        (outputs / f"{stem}.bin").unlink()
        write_bin(outputs / f"{stem}_0.bin", logits_for(label_of(carvana.mask(stem)), classes=2))
    records = score_folder(outputs, carvana.masks, S, workers=1)
    assert [r["name"] for r in records] == carvana.stems
    assert all(r["iou"] == r["dice"] == 1.0 for r in records)


def test_pool_and_single_process_agree(carvana, outputs):
    rng = np.random.default_rng(1)
    for stem in carvana.stems:
        write_bin(outputs / f"{stem}.bin", rng.normal(size=(1, S, S)).astype(np.float32))
    pooled = score_folder(outputs, carvana.masks, S, workers=2)
    assert pooled == score_folder(outputs, carvana.masks, S, workers=1)


def test_wrong_size_names_file_and_bytes(carvana, outputs, tmp_path, capsys):
    bad = outputs / f"{carvana.stems[1]}.bin"
    bad.write_bytes(b"\0" * 1000)
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(bad) in err and "1000 bytes" in err
    assert str(bin_nbytes(1, S)) in err and str(bin_nbytes(2, S)) in err
    assert not (tmp_path / "r.txt").exists()


def test_missing_mask_names_the_path(carvana, outputs, tmp_path, capsys):
    write_bin(outputs / "nomask.bin", np.zeros((1, S, S), np.float32))
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(carvana.masks / "nomask_mask.gif") in err


def test_png_masks_are_taken_where_the_gif_is_and_a_missing_one_names_both(carvana, outputs, tmp_path, capsys):
    """``<stem>_mask.png`` (0/255, as users' own data comes) beside ``<stem>.jpg``: paired by the
    driver's check, scored by stage 6 as the GIF is; a mask that is neither names both."""
    from unet_infer.data import pair_carvana
    for stem in carvana.stems:
        gif = carvana.mask(stem)
        Image.fromarray(np.where(load_label(gif, None), 255, 0).astype(np.uint8), "L").save(
            carvana.masks / f"{stem}_mask.png")
        gif.unlink()
    assert [label.name for _, _, label in pair_carvana(carvana.root)] == [f"{s}_mask.png" for s in carvana.stems]
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}"]) == 0
    assert capsys.readouterr().out.startswith("IOU Average: 1.000000 ")
    (carvana.masks / f"{carvana.stems[0]}_mask.png").unlink()
    for call in (lambda: pair_carvana(carvana.root),
                 lambda: find_outputs(outputs, carvana.masks, S)):
        with pytest.raises(UserError) as info:
            call()
        assert f"{carvana.masks / carvana.stems[0]}_mask.gif: mask not found (nor {carvana.stems[0]}_mask.png" \
            in str(info.value)


def test_masks_of_another_size_are_resized(carvana, outputs, ellipse_mask, write_mask_gif):
    stem = carvana.stems[0]
    big = ellipse_mask(150, 97, seed=7)
    write_mask_gif(carvana.mask(stem), big)
    expected = np.array(Image.fromarray(big.astype(np.uint8)).resize((S, S), Image.Resampling.NEAREST)) == 1
    assert np.array_equal(load_label(carvana.mask(stem), S), expected)
    write_bin(outputs / f"{stem}.bin", logits_for(expected))
    assert score_file(outputs / f"{stem}.bin", carvana.mask(stem), S) == (1.0, 1.0)
    # a mask already S x S is read as it is
    write_mask_gif(carvana.mask(stem), ellipse_mask(S, S, seed=2))
    assert np.array_equal(load_label(carvana.mask(stem), S), ellipse_mask(S, S, seed=2))


def test_l_and_1_masks_count_nonzero_as_car(tmp_path, ellipse_mask):
    mask = ellipse_mask(S, S, seed=4)
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "l.png")
    Image.fromarray(mask).save(tmp_path / "one.png")
    assert Image.open(tmp_path / "one.png").mode == "1"
    assert np.array_equal(load_label(tmp_path / "l.png", S), mask)
    assert np.array_equal(load_label(tmp_path / "one.png", S), mask)
    Image.fromarray(np.zeros((S, S, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="RGB"):
        load_label(tmp_path / "rgb.png", S)


def test_stray_files_skipped_empty_folder_refused(carvana, outputs, tmp_path, caplog, capsys):
    (outputs / "notes.txt").write_text("x")
    (outputs / "sub").mkdir()
    with caplog.at_level(logging.WARNING):
        assert len(find_outputs(outputs, carvana.masks, S)) == len(carvana.stems)
    assert "notes.txt" in caplog.text
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert run([f"--output={empty}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}"]) == 2
    assert capsys.readouterr().err.startswith("error:")
    result = f"--result={tmp_path / 'r.txt'}"
    assert run([f"--output={tmp_path / 'none'}", f"--label={carvana.masks}", result]) == 2
    assert run([f"--output={outputs}", f"--label={tmp_path / 'none'}", result]) == 2
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.json'}"]) == 2
    assert capsys.readouterr().err.count("error:") == 3


def test_zero_suffix_kept_when_its_own_mask_exists(tmp_path, write_mask_gif, ellipse_mask):
    out, masks = tmp_path / "out", tmp_path / "masks"
    out.mkdir(), masks.mkdir()
    for stem in ("img", "img_0"):
        write_mask_gif(masks / f"{stem}_mask.gif", ellipse_mask(S, S))
    write_bin(out / "img_0.bin", np.zeros((1, S, S), np.float32))
    assert [name for name, _, _ in find_outputs(out, masks, S)] == ["img_0"]
    # both <stem>.bin and <stem>_0.bin present: the _0 file is not taken for <stem>
    (masks / "img_0_mask.gif").unlink()
    write_bin(out / "img.bin", np.zeros((1, S, S), np.float32))
    with pytest.raises(UserError, match="img_0_mask.gif"):
        find_outputs(out, masks, S)


def test_results_files(tmp_path):
    records = [{"name": "img10", "iou": 0.9, "dice": 0.95}, {"name": "img2", "iou": 0.3, "dice": 0.4},
               {"name": "img1", "iou": 0.5, "dice": 0.6}]
    summary = write_results(records, tmp_path / "result.txt")
    assert summary["mean_iou"] == pytest.approx(1.7 / 3)
    assert summary["mean_dice"] == pytest.approx(1.95 / 3)
    assert summary["modelzoo_iou"] == pytest.approx(0.7)
    assert summary["n_below_0_5"] == 1 and summary["n_images"] == 3
    assert iou_line(summary) == ("IOU Average: 0.566667 (ModelZoo figure, images with IoU >= 0.5: "
                                     "0.700000; Dice 0.650000; 3 images)")
    assert (tmp_path / "result.txt").read_text() == (
        "name IoU Dice\nimg1 0.500000 0.600000\nimg2 0.300000 0.400000\nimg10 0.900000 0.950000\n")
    written = json.loads((tmp_path / "result.json").read_text())
    assert written == dict(summary, per_image=records[::-1])  # natural order of the name
    low = write_results([{"name": "a", "iou": 0.1, "dice": 0.2}], tmp_path / "low.txt")
    assert low["modelzoo_iou"] is None and "images with IoU >= 0.5: n/a" in iou_line(low)
    with pytest.raises(ValueError):
        write_results([], tmp_path / "none.txt")


def test_natural_order_in_results(carvana, tmp_path, ellipse_mask, write_mask_gif):
    out, masks = tmp_path / "out", tmp_path / "masks"
    out.mkdir(), masks.mkdir()
    for stem in ("img10", "img2", "img1"):
        write_mask_gif(masks / f"{stem}_mask.gif", ellipse_mask(S, S))
        write_bin(out / f"{stem}.bin", logits_for(ellipse_mask(S, S)))
    assert [r["name"] for r in score_folder(out, masks, S, workers=2)] == ["img1", "img2", "img10"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000))
def test_fuzz_bin_bytes_give_a_clean_error(carvana, outputs, tmp_path, capsys, data):
    assume(len(data) not in (bin_nbytes(1, S), bin_nbytes(2, S)))
    (outputs / f"{carvana.stems[0]}.bin").write_bytes(data)
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_truncated_mask_named(carvana, outputs, tmp_path, capsys):
    mask = carvana.mask(carvana.stems[0])
    mask.write_bytes(mask.read_bytes()[:-40])
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(mask) in err and "Traceback" not in err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=400), st.binary(max_size=400).map(lambda b: b"GIF89a" + b)))
def test_fuzz_mask_bytes_give_a_clean_error(carvana, outputs, tmp_path, capsys, data):
    mask = carvana.mask(carvana.stems[0])
    mask.write_bytes(data)
    status = run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={tmp_path / 'r.txt'}",
                  "--workers", "1"])
    err = capsys.readouterr().err
    assert status in (0, 2) and "Traceback" not in err  # 0 only if the bytes happen to be a mask
    if status == 2:
        assert err.startswith("error:") and str(mask) in err


def test_help_shows_the_guide_command(capsys):
    with pytest.raises(SystemExit):
        postprocess_unet_pth.main(["--help"])
    out = capsys.readouterr().out
    assert ("python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks "
            "--result=./result.txt") in out
    assert "(default: 572)" in out


def test_a_result_inside_the_outputs_or_labels_is_refused_before_scoring(carvana, outputs, tmp_path, capsys):
    target = outputs / f"{carvana.stems[0]}.bin"
    before = target.read_bytes()
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={target}"]) == 2
    err = capsys.readouterr().err
    assert "would overwrite the input" in err and target.read_bytes() == before
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={carvana.masks}/r.txt"]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert not (carvana.masks / "r.txt").exists() and not (carvana.masks / "r.json").exists()


def test_an_unwritable_result_fails_before_scoring(carvana, outputs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert run([f"--output={outputs}", f"--label={carvana.masks}", f"--result={blocker}/sub/r.txt"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0]
