"""What a run leaves outside its work folder: nothing. Where a local Ray keeps its files (the work
folder, else a short temporary folder named for it) and the token it is given; an OpenVINO quantise
and compile write nothing in the user's home (no ~/intel telemetry counter). HOME and TMPDIR point
at empty test folders, and the files there are compared before and after. A local cluster=ray run
(its Ray's files in WORK/.ray, no stale ``ray_current_cluster`` joined, no process left behind) is
checked where the driver is killed and resumed (test_cluster_resume.py)."""

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
import torch

from unet_infer.cluster import local

from tiny_unet import SIZE, smooth_images, tiny_unet

ROOT = Path(__file__).resolve().parents[1]
BS = 2
STALE = "127.0.0.1:1"  # a Ray that a killed `ray start` recorded: nothing listens there


def tree(folder):
    """Every file and folder under ``folder``, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.fixture
def root():
    """A short folder (Ray's sockets must fit under root/work/.ray) with an empty home and temporary folder."""
    path = Path(tempfile.mkdtemp(prefix="fp", dir="/tmp" if os.path.isdir("/tmp") else None))
    for name in ("home", "tmp", "work"):
        (path / name).mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def environment(root):
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(root / "home"), TMPDIR=str(root / "tmp"), UNET_INFER_QUIET="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return env


def export_tiny(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_unet(), torch.zeros(1, 3, SIZE, SIZE), str(path), dynamo=False, opset_version=11,
                          input_names=["actual_input_1"], output_names=["output1"],
                          dynamic_axes={"actual_input_1": {0: "-1"}, "output1": {0: "-1"}})
    return path


def processes_naming(text):
    """Pids of the live processes whose command line names ``text``."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_ray_falls_back_to_a_short_temporary_folder_named_for_the_work_folder(monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", "/st")  # what TMPDIR=/st gives (tempfile.gettempdir)
    near = Path("/w") / ("a" * (local.LONGEST_FOLDER - len("/w/") - len(local.RAY_DIR) - 1))
    assert local.temp_dir(near) == (near / local.RAY_DIR, None)  # exactly the longest that fits
    deep = near.parent / (near.name + "b")
    folder, why = local.temp_dir(deep)
    assert folder.parent == Path("/st") and folder.name.startswith(local.FALLBACK_PREFIX) and "too long" in why
    assert local.temp_dir(deep)[0] == folder != local.temp_dir(deep / "other")[0]  # one per work folder
    monkeypatch.setattr(tempfile, "tempdir", "/" + "t" * local.LONGEST_FOLDER)  # a deep TMPDIR: /tmp then
    assert local.temp_dir(deep)[0] == Path("/tmp") / folder.name


def test_a_token_is_given_only_where_the_user_has_none(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    environ = {}
    assert local.provide_token(environ) and len(environ[local.TOKEN_ENV]) == 64
    environ.clear()
    assert not local.provide_token({local.TOKEN_PATH_ENV: "/secrets/ray_token"})
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("the user's")
    assert not local.provide_token(environ) and environ == {}


def test_openvino_quantise_and_compile_write_nothing_in_home(root):
    work = root / "work"
    export_tiny(work / "UNet_dynamic_bs.onnx")
    (work / "prep_bin").mkdir()
    for i, image in enumerate(smooth_images(2, seed=7)):
        image.tofile(work / "prep_bin" / f"img{i}.bin")
    for argv in (["unet_infer.quantize", "--backend", "openvino", "--model", "UNet_dynamic_bs.onnx", "--calib",
                  "prep_bin", "--output", "UNet_int8.xml", "--n-calib", "2", "--quiet"],
                 ["unet_infer.compile", "--backend", "openvino", "--model", "UNet_int8.xml", "--batchsize",
                  str(BS), "--output", f"UNet_int8_bs{BS}.xml"]):
        proc = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, timeout=240,
                              env=environment(root), cwd=work)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / f"UNet_int8_bs{BS}.xml").is_file()
    assert tree(root / "home") == []  # no intel/ (openvino_telemetry's stats and client id)
    assert tree(root / "tmp") == []
