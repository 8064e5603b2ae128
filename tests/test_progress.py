"""Progress display: tqdm on a terminal, plain periodic lines in logs, nothing with --quiet."""

import sys

from tqdm import tqdm

import preprocess_unet_pth
from unet_infer import progress as progress_mod
from unet_infer.cli import run_cli


def test_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress_mod, "_QUIET", False)
    monkeypatch.delenv("UNET_INFER_QUIET", raising=False)
    bar = progress_mod.progress(range(5), desc="work")
    assert not isinstance(bar, tqdm)
    assert list(bar) == [0, 1, 2, 3, 4]
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("work: 5/5")  # the closing line, once
    assert len([line for line in err if line.startswith("work: 5/5")]) == 1
    with progress_mod.progress(total=2, desc="steps") as bar:  # counted by hand, with tqdm's postfix
        bar.set_postfix_str("loss=0.5")
        bar.update(2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("steps: 2/2 (") and err[0].endswith(" loss=0.5")


def test_tqdm_on_a_terminal(monkeypatch):
    monkeypatch.setattr(progress_mod, "_QUIET", False)
    monkeypatch.delenv("UNET_INFER_QUIET", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress_mod.progress(range(3), desc="work")
    assert isinstance(bar, tqdm)
    bar.close()


def test_quiet_flag_and_environment_silence_it(capsys, monkeypatch):
    monkeypatch.setenv("UNET_INFER_QUIET", "1")
    assert list(progress_mod.progress(range(3), desc="env")) == [0, 1, 2]
    monkeypatch.delenv("UNET_INFER_QUIET")
    progress_mod.set_quiet(True)
    try:
        with progress_mod.progress(total=2, desc="flag") as bar:
            bar.update(2)
    finally:
        progress_mod.set_quiet(False)
    assert capsys.readouterr().err == ""


def test_a_stage_script_shows_progress_unless_quiet(carvana, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UNET_INFER_QUIET", raising=False)
    argv = [f"--src_path={carvana.train}", "--save_bin_path", str(tmp_path / "a"), "--size", "16", "--workers", "1"]
    assert run_cli(preprocess_unet_pth.main, argv) == 0
    shown = capsys.readouterr().err
    assert f"/{len(carvana.stems)}" in shown
    argv[2] = str(tmp_path / "b")
    assert run_cli(preprocess_unet_pth.main, argv + ["--quiet"]) == 0
    assert f"/{len(carvana.stems)}" not in capsys.readouterr().err
    progress_mod.set_quiet(False)
