"""Every script's --help shows the guide's (or its own) example command and exits 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYTHON_TOOLS = {
    ("preprocess_unet_pth.py",): "python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin",
    ("unet_pth2onnx.py",): "python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx",
    ("json_parse.py",): "python3 json_parse.py --output=result/bs8/",
    ("postprocess_unet_pth.py",): "python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks "
                                  "--result=./result.txt",
    ("-m", "unet_infer.bench"): "python3 -m unet_infer.bench --model=UNet_bs8.onnx --input=./prep_bin --output=result "
                                "--output_dirname=bs8 --batchsize=8",
    ("-m", "unet_infer.compile"): "python3 -m unet_infer.compile --model UNet_dynamic_sim.onnx --batchsize 8",
    ("-m", "unet_infer.quantize"): "python3 -m unet_infer.quantize --model UNet_dynamic_sim.onnx --calib prep_bin",
    ("-m", "unet_infer.sample"): "python3 -m unet_infer.sample --out",
    ("-m", "unet_infer.train"): "python3 -m unet_infer.train --data",
    ("-m", "unet_infer.stream"): "python3 -m unet_infer.stream --model",
    ("-m", "unet_infer.report"): "python3 -m unet_infer.report --work work",
    ("-m", "unet_infer.benchmark"): "python3 -m unet_infer.benchmark --weights",
}

SHELL_TOOLS = {
    "run_all.sh": "scripts/run_all.sh bs=8",
    "onnxsim.sh": "scripts/onnxsim.sh UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx",
    "atc.sh": "scripts/atc.sh --model=UNet_dynamic_sim.onnx --bs=8",
    "benchmark.sh": "scripts/benchmark.sh",
    "train_bundled.sh": "scripts/train_bundled.sh",
}


def _flat(text):
    return " ".join(text.replace("\\\n", " ").split())


@pytest.mark.parametrize("argv,example", sorted(PYTHON_TOOLS.items()))
def test_python_help_shows_the_example(argv, example):
    proc = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert example in _flat(proc.stdout)
    if argv != ("json_parse.py",):  # its one option has no default
        assert "default" in proc.stdout


@pytest.mark.parametrize("script,example", sorted(SHELL_TOOLS.items()))
def test_shell_help_shows_the_example(script, example):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert example in _flat(proc.stdout)
