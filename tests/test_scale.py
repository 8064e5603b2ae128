"""The stream-at-scale benchmark (benchmarks/stream_scale.py) at a tiny count: its figures' format and its clean-up."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unet_infer.cli import UserError

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "stream_scale.py"
spec = importlib.util.spec_from_file_location("stream_scale", SCRIPT)
scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale)

NUMBER = r"[\d,]+(?:\.\d+)?"


def test_tiny_run_prints_its_figures_and_removes_its_folder(tmp_path):
    work = tmp_path / "scale"
    done = subprocess.run([sys.executable, str(SCRIPT), "--counts", "40", "--ab-count", "40",
                           "--repeats", "1", "--warmup", "0", "--distinct", "16", "--target", "1000",
                           "--workdir", str(work)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert re.search(rf"^scale 40 images: {NUMBER} s, {NUMBER} images/s, peak RSS {NUMBER} MB stream, "
                     rf"{NUMBER} MB largest decoder, {NUMBER} MB tree; record {NUMBER} B, 5 units, {NUMBER} B/unit; "
                     rf"append {NUMBER} us/unit; load {NUMBER}$", out, re.M), out
    assert re.search(rf"^record cost, 1 pair\(s\) at 40 images: with {NUMBER} s \(range {NUMBER}-{NUMBER}\), "
                     rf"without {NUMBER} s .*; load {NUMBER} \(max {NUMBER}\)$", out, re.M), out
    sizing = re.search(rf"^sizing 1,000 images = 125 batches of 8: record ({NUMBER}) B \(({NUMBER}) B/unit x 125\)",
                       out, re.M)
    assert sizing, out
    per_unit = float(sizing.group(2))
    assert 50 < per_unit < 5000  # 8 names and scores in JSON, a CRC: some hundred bytes
    assert float(sizing.group(1).replace(",", "")) > 125 * per_unit
    assert not work.exists()


def test_an_existing_workdir_is_refused_and_kept(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="must not exist"):
        scale.main(["--workdir", str(tmp_path)])
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_unit_bytes_leaves_out_the_header_and_attempt_lines():
    run = {"record_bytes": 1100, "head_bytes": 100, "units": 4}
    assert scale.unit_bytes(run) == 250
    assert scale.unit_bytes({"units": None}) is None
