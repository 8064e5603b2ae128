"""Stage 1: images -> .bin, byte for byte, and its handling of odd folders and files."""

import logging

import numpy as np
import pytest
from PIL import Image

import preprocess_unet_pth
from unet_infer.cli import UserError, run_cli
from unet_infer.formats import bin_nbytes
from unet_infer.data import image_to_array, load_image
from unet_infer.preprocess import preprocess_folder

S = 64


def reference(path, size=S):
    """The definition, written out plainly: PIL convert + default resize, float32, CHW, / 255."""
    img = Image.open(path).convert("RGB").resize((size, size))
    return (np.array(img, dtype=np.float32).transpose(2, 0, 1) / 255).astype(np.float32)


def run(argv):
    return run_cli(preprocess_unet_pth.main, argv + ["--quiet"])


def test_image_to_array_matches_the_definition(carvana):
    for stem in carvana.stems:
        path = carvana.image(stem)
        got = load_image(path, S)
        assert got.dtype == np.float32 and got.shape == (3, S, S) and got.flags.c_contiguous
        assert got.tobytes() == reference(path).tobytes()
        # float32 arithmetic throughout gives the very same bytes
        rgb = Image.open(path).convert("RGB").resize((S, S))
        in_float32 = np.asarray(rgb).astype(np.float32).transpose(2, 0, 1) / np.float32(255)
        assert got.tobytes() == in_float32.tobytes()


def test_image_to_array_uses_the_default_bicubic_filter(smooth_rgb):
    img = Image.fromarray(smooth_rgb(50, 30, seed=3))
    bicubic = np.asarray(img.resize((S, S), Image.Resampling.BICUBIC), dtype=np.float32) / 255
    assert np.array_equal(image_to_array(img, S), bicubic.transpose(2, 0, 1))
    assert image_to_array(img, 20).shape == (3, 20, 20)


def test_folder_written_byte_exact(carvana, tmp_path):
    dst = tmp_path / "prep_bin"
    assert run(["--src_path", str(carvana.train), "--save_bin_path", str(dst), "--size", str(S)]) == 0
    assert sorted(p.name for p in dst.iterdir()) == sorted(f"{s}.bin" for s in carvana.stems)
    for stem in carvana.stems:
        data = (dst / f"{stem}.bin").read_bytes()
        assert len(data) == bin_nbytes(3, S) == 3 * S * S * 4
        assert data == reference(carvana.image(stem)).tobytes()


def test_pool_and_single_process_agree(carvana, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert preprocess_folder(carvana.train, one, S, workers=1) == (len(carvana.stems), [])
    assert preprocess_folder(carvana.train, two, S, workers=2) == (len(carvana.stems), [])
    for stem in carvana.stems:
        assert (one / f"{stem}.bin").read_bytes() == (two / f"{stem}.bin").read_bytes()


@pytest.mark.parametrize("mode,suffix", [("L", ".jpg"), ("RGBA", ".png"), ("P", ".png"), ("L", ".png"),
                                         ("RGB", ".PNG"), ("RGB", ".jpeg"), ("CMYK", ".JPG")])
def test_other_modes_and_suffixes_are_converted(tmp_path, smooth_rgb, mode, suffix):
    src = tmp_path / "src"
    src.mkdir()
    img = Image.fromarray(smooth_rgb(40, 24, seed=5))
    img = img.convert(mode) if mode != "P" else img.quantize(16)
    path = src / f"pic{suffix}"
    img.save(path)
    assert preprocess_folder(src, tmp_path / "out", S, workers=1) == (1, [])
    assert (tmp_path / "out" / "pic.bin").read_bytes() == reference(path).tobytes()


def test_stray_files_skipped_with_a_warning(carvana, tmp_path, caplog):
    (carvana.train / "notes.txt").write_text("hello")
    (carvana.train / "subfolder").mkdir()
    with caplog.at_level(logging.WARNING):
        written, bad = preprocess_folder(carvana.train, tmp_path / "out", S, workers=1)
    assert (written, bad) == (len(carvana.stems), [])
    assert f"{carvana.train / 'notes.txt'}: not an image file (.jpg/.jpeg/.png), skipped" in caplog.text
    assert "subfolder" not in caplog.text
    assert not (tmp_path / "out" / "notes.bin").exists()


def test_output_into_the_image_folder_is_refused(carvana, capsys):
    before = sorted(p.name for p in carvana.train.iterdir())
    assert run(["--src_path", str(carvana.train), "--save_bin_path", str(carvana.train)]) == 2
    assert "must not be the image folder" in capsys.readouterr().err
    assert sorted(p.name for p in carvana.train.iterdir()) == before


def test_corrupt_and_truncated_named_others_written(carvana, tmp_path, caplog, capsys):
    good = carvana.image(carvana.stems[0]).read_bytes()
    (carvana.train / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (carvana.train / "garbage.png").write_bytes(b"\x89PNG not really" * 10)
    (carvana.train / "empty.jpeg").write_bytes(b"")
    dst = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        status = run(["--src_path", str(carvana.train), "--save_bin_path", str(dst), "--size", str(S),
                      "--workers", "2"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    for name in ("truncated.jpg", "garbage.png", "empty.jpeg"):
        assert name in err and name in caplog.text
        assert not (dst / f"{name.split('.')[0]}.bin").exists()
    for stem in carvana.stems:
        assert (dst / f"{stem}.bin").stat().st_size == bin_nbytes(3, S)


def test_skip_unreadable_lists_them_and_succeeds_the_default_stays_strict(carvana, tmp_path, capsys):
    (carvana.train / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    dst = tmp_path / "out"
    args = ["--src_path", str(carvana.train), "--save_bin_path", str(dst), "--size", str(S), "--workers", "1"]
    assert run(args) == 2
    err = capsys.readouterr().err
    assert "1 unreadable image(s), not converted" in err and "--skip_unreadable" in err and "unreadable=skip" in err
    for flag in ("--skip_unreadable", "--skip-unreadable"):
        assert run([*args, flag]) == 0
        out, err = capsys.readouterr()
        assert f"skipped 1 unreadable image(s), not converted (left out of the next stages): " \
               f"{carvana.train / 'broken.jpg'}" in out and "error" not in err
    assert sorted(p.stem for p in dst.iterdir()) == sorted(carvana.stems)


def test_the_driver_goes_on_without_an_unreadable_image_only_when_asked(carvana, tmp_path, capsys):
    """unreadable=stop (the default) does not go on with an image left out by an unreadable=skip run."""
    from unet_infer import stages
    (carvana.train / "broken.jpg").write_bytes(b"")
    work = tmp_path / "work"
    args = ["--src_path", str(carvana.train), "--save_bin_path", str(work / "prep_bin"), "--size", str(S),
            "--workers", "1"]
    assert run([*args, "--skip_unreadable"]) == 0
    assert run_cli(stages.main, ["all-converted", "--work", str(work), "--data", str(carvana.root)]) == 2
    err = capsys.readouterr().err
    assert "1 image(s) not converted" in err and "broken.jpg" in err and "unreadable=skip" in err
    (carvana.train / "broken.jpg").unlink()
    assert run_cli(stages.main, ["all-converted", "--work", str(work), "--data", str(carvana.root)]) == 0


def test_empty_and_missing_folders(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    assert run(["--src_path", str(tmp_path / "empty"), "--save_bin_path", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error:")
    assert run(["--src_path", str(tmp_path / "missing"), "--save_bin_path", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "missing" in err


def test_existing_files_in_the_output_are_kept(carvana, tmp_path):
    dst = tmp_path / "prep_bin"
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    (dst / "other.bin").write_bytes(b"1234")
    assert preprocess_folder(carvana.train, dst, S, workers=1)[0] == len(carvana.stems)
    assert (dst / "keep.txt").read_text() == "mine"
    assert (dst / "other.bin").read_bytes() == b"1234"
    # nothing but <stem>.bin is added (no marker or temporary files)
    assert {p.name for p in dst.iterdir()} == {"keep.txt", "other.bin"} | {f"{s}.bin" for s in carvana.stems}


def test_output_inside_the_input_folder(carvana):
    dst = carvana.train / "prep_bin"
    for _ in range(2):  # the second run finds the output folder among the images and ignores it
        assert preprocess_folder(carvana.train, dst, S, workers=1) == (len(carvana.stems), [])
    assert len(list(dst.iterdir())) == len(carvana.stems)


def test_two_images_with_one_stem_refused(carvana, tmp_path, smooth_rgb):
    Image.fromarray(smooth_rgb(20, 20)).save(carvana.train / f"{carvana.stems[0]}.png")
    with pytest.raises(UserError, match="have the same name"):
        preprocess_folder(carvana.train, tmp_path / "out", S, workers=1)


def test_bad_size_and_workers_refused(carvana, tmp_path, capsys):
    for flags in (["--size", "0"], ["--workers", "0"]):
        assert run(["--src_path", str(carvana.train), "--save_bin_path", str(tmp_path / "o")] + flags) == 2
        assert capsys.readouterr().err.startswith("error:")


def test_help_shows_the_guide_command(capsys):
    with pytest.raises(SystemExit):
        preprocess_unet_pth.main(["--help"])
    out = capsys.readouterr().out
    assert "python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin" in out
    assert "(default: 572)" in out
