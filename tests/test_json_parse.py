"""Stage 5: renaming the runner's outputs after the summary, safely and repeatably."""

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import json_parse
from unet_infer.cli import UserError, run_cli
from unet_infer.formats import inside
from unet_infer.rename import apply_plan, rename_plan
from unet_infer.summary import build_summary, write_summary


def summary_for(pairs):
    """A summary as ais_bench writes it: one entry per (input path, output path)."""
    filesinfo = {str(i): {"infiles": [src], "outfiles": [dst]} for i, (src, dst) in enumerate(pairs)}
    return build_summary(filesinfo, {"batchsize": 1}, [1.0], [0.1], [0.1], batchsize=1, pid=1)


def make_run(tmp_path, stems, dirname="bs8"):
    """result/bs8/<stem>_0.bin (content: the stem) and result/bs8_summary.json."""
    out = tmp_path / "result" / dirname
    out.mkdir(parents=True)
    pairs = []
    for stem in stems:
        (out / f"{stem}_0.bin").write_text(stem)
        pairs.append((f"./prep_bin/{stem}.bin", str(out / f"{stem}_0.bin")))
    write_summary(tmp_path / "result" / f"{dirname}_summary.json", summary_for(pairs))
    return out


def run(argv):
    return run_cli(json_parse.main, argv)


def contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


STEMS = ["img2", "img10", "img1", "0cdf5b5d0ce1_01"]


def test_rename_then_rerun_changes_nothing(tmp_path, capsys):
    out = make_run(tmp_path, STEMS)
    assert run([f"--output={out}/"]) == 0
    assert capsys.readouterr().out == f"renamed 4 files (0 already done) in {out}/\n"
    assert contents(out) == {f"{s}.bin": s for s in STEMS}
    assert run([f"--output={out}"]) == 0
    assert capsys.readouterr().out == f"renamed 0 files (4 already done) in {out}\n"
    assert contents(out) == {f"{s}.bin": s for s in STEMS}


def test_relative_output_and_summary_path(tmp_path, monkeypatch):
    make_run(tmp_path, STEMS)
    monkeypatch.chdir(tmp_path)
    assert run(["--output=result/bs8/"]) == 0
    assert contents(Path("result/bs8")) == {f"{s}.bin": s for s in STEMS}
    monkeypatch.chdir(tmp_path / "result" / "bs8")
    assert run(["--output=."]) == 0


def test_half_done_run_finishes(tmp_path, capsys):
    out = make_run(tmp_path, STEMS)
    os.rename(out / "img10_0.bin", out / "img10.bin")
    assert run([f"--output={out}"]) == 0
    assert "renamed 3 files (1 already done)" in capsys.readouterr().out
    assert contents(out) == {f"{s}.bin": s for s in STEMS}


def test_killed_run_then_rerun(tmp_path, monkeypatch):
    out = make_run(tmp_path, STEMS)
    calls = []
    real_rename = os.rename

    def dying_rename(src, dst):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(src)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", dying_rename)
    assert run([f"--output={out}"]) == 130
    monkeypatch.setattr(os, "rename", real_rename)
    assert run([f"--output={out}"]) == 0
    assert contents(out) == {f"{s}.bin": s for s in STEMS}


def test_existing_target_never_overwritten(tmp_path, capsys):
    out = make_run(tmp_path, STEMS)
    (out / "img2.bin").write_text("precious")
    assert run([f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "img2.bin" in err and "img2_0.bin" in err
    # the whole plan is checked first: nothing was renamed
    assert contents(out) == {**{f"{s}_0.bin": s for s in STEMS}, "img2.bin": "precious"}


def test_missing_output_file_named(tmp_path, capsys):
    out = make_run(tmp_path, STEMS)
    (out / "img1_0.bin").unlink()
    assert run([f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "img1_0.bin" in err
    assert len(list(out.glob("*_0.bin"))) == 3


def test_missing_and_broken_summary(tmp_path, capsys):
    out = make_run(tmp_path, STEMS)
    summary = tmp_path / "result" / "bs8_summary.json"
    text = summary.read_text()
    summary.write_text(text[: len(text) // 2])
    assert run([f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bs8_summary.json" in err
    summary.unlink()
    assert run([f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "bs8_summary.json" in err
    assert run([f"--output={tmp_path / 'nowhere'}"]) == 2
    assert capsys.readouterr().err.startswith("error:")
    summary.write_text("[" * 100_000)  # nested too deep for the JSON decoder
    assert run([f"--output={out}"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_chained_names_renamed_in_a_safe_order(tmp_path):
    # inputs a.bin and a_0.bin: outputs a_0.bin and a_0_0.bin; a_0.bin must move first
    out = make_run(tmp_path, ["a_0", "a"])
    assert apply_plan(out, rename_plan(json_parse_summary(tmp_path))) == (2, 0)
    assert contents(out) == {"a.bin": "a", "a_0.bin": "a_0"}
    assert apply_plan(out, rename_plan(json_parse_summary(tmp_path))) == (0, 2)


def json_parse_summary(tmp_path):
    from unet_infer.summary import read_summary
    return read_summary(tmp_path / "result" / "bs8_summary.json")


def test_plan_uses_base_names_and_keeps_the_output_suffix():
    plan = rename_plan(summary_for([("/data/prep_bin/x.bin", "/abs/result/bs8/x_0.bin"),
                                    ("../y.npy", "../../y_0.bin"),
                                    ("z.bin", "z_0.npy")]))
    assert plan == [("x_0.bin", "x.bin"), ("y_0.bin", "y.bin"), ("z_0.npy", "z.npy")]


@pytest.mark.parametrize("infile,outfile", [("..", "x_0.bin"), ("x.bin", ".."), ("x.bin", "/"),
                                            ("x.bin", "result/bs8/"), ("", "x_0.bin"), ("/..", "x_0.bin"),
                                            ("x.bin", "a\0b"), ("x.bin", "\ud800")])
def test_names_without_a_usable_base_name_refused(infile, outfile):
    with pytest.raises(UserError, match="usable file name"):
        rename_plan(summary_for([(infile, outfile)]))


def test_duplicates_and_cycles_refused():
    with pytest.raises(UserError, match="twice"):
        rename_plan(summary_for([("a.bin", "x_0.bin"), ("b.bin", "x_0.bin")]))
    with pytest.raises(UserError, match="both be renamed"):
        rename_plan(summary_for([("a.bin", "x_0.bin"), ("d/a.bin", "y_0.bin")]))
    with pytest.raises(UserError, match="cycle"):
        rename_plan(summary_for([("a.bin", "b.bin"), ("b.bin", "a.bin")]))
    with pytest.raises(UserError, match="no input or no output"):
        rename_plan({"filesinfo": {"0": {"infiles": [], "outfiles": ["x_0.bin"]}}})


def test_parent_and_absolute_paths_stay_inside(tmp_path, capsys):
    """``../x_0.bin`` and ``/elsewhere/x_0.bin`` name files in the folder, never outside it."""
    out = tmp_path / "result" / "bs8"
    out.mkdir(parents=True)
    (tmp_path / "result" / "victim_0.bin").write_text("outside")
    (out / "victim_0.bin").write_text("inside")
    pairs = [("../../victim.bin", "../victim_0.bin"), ("/etc/passwd", str(tmp_path / "victim_0.bin"))]
    write_summary(tmp_path / "result" / "bs8_summary.json", summary_for(pairs[:1]))
    assert run([f"--output={out}"]) == 0
    assert (tmp_path / "result" / "victim_0.bin").read_text() == "outside"
    assert contents(out) == {"victim.bin": "inside"}
    with pytest.raises(UserError, match="twice"):  # both name victim_0.bin in the folder
        rename_plan(summary_for(pairs))


def test_links_leading_outside_refused(tmp_path, capsys):
    out = make_run(tmp_path, ["img1"])
    secret = tmp_path / "secret.bin"
    secret.write_text("secret")
    os.symlink(secret, out / "evil_0.bin")
    pairs = [("img1.bin", "img1_0.bin"), ("evil.bin", "evil_0.bin")]
    write_summary(tmp_path / "result" / "bs8_summary.json", summary_for(pairs))
    assert run([f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "evil_0.bin" in err and "outside" in err
    assert (out / "img1_0.bin").exists() and secret.read_text() == "secret"


# -- properties ---------------------------------------------------------------------------------

path_parts = st.sampled_from(list("ab._/\\~ -\0") + ["\udcff", "\ud800", ".."])
path_text = st.lists(path_parts, max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(path_text, path_text), max_size=6))
def test_plan_names_never_escape(pairs):
    try:
        plan = rename_plan(summary_for(pairs))
    except UserError:
        return
    with tempfile.TemporaryDirectory() as folder:
        for src, dst in plan:
            for name in (src, dst):
                assert "/" not in name and name not in ("", ".", "..")
                assert inside(folder, name) is not None
    assert len({s for s, _ in plan}) == len({d for _, d in plan}) == len(plan) == len(pairs)


stems = st.text(alphabet=st.sampled_from(list("ab0_.-")), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..") and not s.startswith("."))


@settings(max_examples=200, deadline=None)
@given(st.lists(stems, unique=True, max_size=8))
def test_plan_is_a_bijection_on_valid_names(names):
    plan = rename_plan(summary_for([(f"prep_bin/{s}.bin", f"result/bs8/{s}_0.bin") for s in names]))
    assert plan == [(f"{s}_0.bin", f"{s}.bin") for s in names]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["a", "a_0", "a_0_0", "b", "b_0", "c1", "c_0"]), unique=True, min_size=1),
       st.integers(0, 8))
def test_interrupted_at_any_point_then_rerun(names, kill_after):
    """Kill the renames after ``kill_after`` of them, run again: every file ends under its name."""
    with tempfile.TemporaryDirectory() as tmp:
        out = make_run(Path(tmp), names)
        plan = rename_plan(json_parse_summary(Path(tmp)))
        real_rename, calls = os.rename, []

        def dying_rename(src, dst):
            if len(calls) == kill_after:
                raise KeyboardInterrupt
            calls.append(src)
            real_rename(src, dst)

        os.rename = dying_rename
        try:
            apply_plan(out, plan)
        except KeyboardInterrupt:
            pass
        finally:
            os.rename = real_rename
        renamed, done = apply_plan(out, plan)
        assert renamed + done == len(names)
        assert contents(out) == {f"{s}.bin": s for s in names}
        assert apply_plan(out, plan) == (0, len(names))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_summary_bytes_give_a_clean_error(tmp_path, capsys, data):
    assume(data.strip() not in (b"",))
    out = tmp_path / "result" / "bs8"
    out.mkdir(parents=True, exist_ok=True)
    (tmp_path / "result" / "bs8_summary.json").write_bytes(data)
    assert run([f"--output={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err


def test_help_shows_the_guide_command(capsys):
    with pytest.raises(SystemExit):
        json_parse.main(["--help"])
    assert "python3 json_parse.py --output=result/bs8/" in capsys.readouterr().out
