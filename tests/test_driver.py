"""scripts/run_all.sh end to end on a tiny case, its re-runs after a stage was killed, and its options."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unet_infer.sample import generate

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "scripts" / "run_all.sh"
WEIGHTS = ROOT / "weights" / "unet_w16_sample.pth"
SIZE = 64


def run_driver(*args, python=None, cwd=None):
    env = {**os.environ, "PYTHON": python or sys.executable, "UNET_INFER_QUIET": "1"}
    return subprocess.run(["bash", str(DRIVER), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("carvana")
    generate(root, cars=1, seed=11, views=5, width=160, height=107, workers=1)
    return root


def common(tiny_data, work):
    return [f"data={tiny_data}", f"weights={WEIGHTS}", f"workdir={work}", f"size={SIZE}", "quiet=1"]


def test_end_to_end_then_everything_is_skipped(tiny_data, tmp_path):
    work = tmp_path / "work"
    proc = run_driver("bs=2,4", *common(tiny_data, work))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("IoU ") and "throughput" in last and "bs 4" in last

    for name in ("UNet_dynamic_bs.onnx", "UNet_dynamic_sim.onnx", "UNet_bs2.onnx", "UNet_bs4.onnx",
                 "result/bs2_summary.json", "result/bs4_summary.json", "result.txt", "result.json",
                 "result_bs2.json", "report/summary.md", "report/per_image.csv", "report/iou_hist.png"):
        assert (work / name).is_file(), name
    assert len(list((work / "prep_bin").glob("*.bin"))) == 5
    outputs = sorted(p.name for p in (work / "result" / "bs4").iterdir())
    assert outputs == sorted(f"{p.stem}.bin" for p in (tiny_data / "train").iterdir())  # renamed by json_parse
    result = json.loads((work / "result.json").read_text())
    assert result["n_images"] == 5 and 0.0 <= result["mean_iou"] <= 1.0
    assert json.loads((work / "result_bs2.json").read_text())["mean_iou"] == pytest.approx(result["mean_iou"], abs=1e-6)

    again = run_driver("bs=2,4", *common(tiny_data, work))
    assert again.returncode == 0, again.stderr
    for stage in ("preprocess", "export", "simplify", "compile_bs2", "infer_bs4", "rename_bs4", "score_bs4"):
        assert f"{stage}: complete, skipped" in again.stdout
    assert again.stdout.strip().splitlines()[-1].split(", throughput")[0] == last.split(", throughput")[0]


def _killing_python(tmp_path, pattern, action):
    """A stand-in interpreter that runs the real one and then dies (exit 137) the first time its
    command line contains ``pattern``, after ``action`` (shell code) damaged the stage's outputs."""
    flag = tmp_path / f"killed-{abs(hash(pattern))}"
    script = tmp_path / "python"
    script.write_text(f"""#!/usr/bin/env bash
if [[ "$*" == *{pattern}* && ! -e {flag} ]]; then
    touch {flag}
    {sys.executable} "$@"
    {action}
    exit 137
fi
exec {sys.executable} "$@"
""")
    script.chmod(0o755)
    return script


def test_preprocess_killed_half_way_is_redone(tiny_data, tmp_path):
    work = tmp_path / "work"
    python = _killing_python(tmp_path, "preprocess_unet_pth.py",
                             f'ls {work}/prep_bin/*.bin | head -n 2 | xargs rm -f')
    first = run_driver("bs=2", *common(tiny_data, work), python=python)
    assert first.returncode != 0 and "stage preprocess failed" in first.stderr
    assert len(list((work / "prep_bin").glob("*.bin"))) == 3
    second = run_driver("bs=2", *common(tiny_data, work), python=python)
    assert second.returncode == 0, second.stderr
    assert len(list((work / "prep_bin").glob("*.bin"))) == 5
    assert json.loads((work / "result.json").read_text())["n_images"] == 5


def test_inference_killed_half_way_is_set_aside_and_redone(tiny_data, tmp_path):
    work = tmp_path / "work"
    python = _killing_python(tmp_path, "unet_infer.bench",
                             f'ls {work}/result/bs2/*.bin | head -n 1 | xargs rm -f')
    first = run_driver("bs=2", *common(tiny_data, work), python=python)
    assert first.returncode != 0 and "infer_bs2" in first.stderr
    second = run_driver("bs=2", *common(tiny_data, work), python=python)
    assert second.returncode == 0, second.stderr
    assert "moving an earlier incomplete or outdated run aside" in second.stdout
    assert len(list((work / "result" / "bs2").glob("*.bin"))) == 5
    aside = [p for p in (work / "result").iterdir() if p.name.startswith("bs2.old-")]
    assert len(aside) == 1 and (aside[0] / "bs2").is_dir()  # nothing lost
    assert json.loads((work / "result.json").read_text())["n_images"] == 5


def test_help_and_bad_options(tmp_path):
    help_text = run_driver("--help").stdout
    for key in ("bs=", "data=", "weights=", "workdir=", "backend=", "precision=", "stream=", "scripts/run_all.sh bs=8"):
        assert key in help_text
    for bad, words in ((["bs=0"], "bs must"), (["bs=8", "backend=tpu"], "backend must"),
                       (["bs=8", "precision=int8", "backend=torch"], "not available"),
                       (["bs=8", "frobnicate"], "unknown option"),
                       (["bs=8", f"data={tmp_path}"], "train"),
                       (["bs=8", f"weights={tmp_path}/none.pth"], "checkpoint not found")):
        proc = run_driver(*bad, f"workdir={tmp_path}/w")
        assert proc.returncode == 2 and "error:" in proc.stderr and words in proc.stderr, (bad, proc.stderr)


def test_other_data_in_the_same_work_folder_is_refused(tiny_data, tmp_path):
    work = tmp_path / "work"
    assert run_driver("bs=2", *common(tiny_data, work)).returncode == 0
    other = tmp_path / "other"
    generate(other, cars=1, seed=12, views=2, width=160, height=107, workers=1)
    proc = run_driver("bs=2", f"data={other}", f"weights={WEIGHTS}", f"workdir={work}", f"size={SIZE}")
    assert proc.returncode == 2 and "use another workdir=" in proc.stderr
