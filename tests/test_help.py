"""Every script's --help shows the guide's (or its own) example command and exits 0."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# tool -> (its example command, one default its --help must show)
PYTHON_TOOLS = {
    ("preprocess_unet_pth.py",): ("python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin",
                                  "(default: 572)"),
    ("unet_pth2onnx.py",): ("python3 unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx", "(default: 0.0001)"),
    ("json_parse.py",): ("python3 json_parse.py --output=result/bs8/", None),
    ("postprocess_unet_pth.py",): ("python3 postprocess_unet_pth.py --output=result/bs8 --label=./carvana/train_masks "
                                   "--result=./result.txt", "(default: 572)"),
    ("-m", "unet_infer.bench"): ("python3 -m unet_infer.bench --model=UNet_bs8.onnx --input=./prep_bin --output=result "
                                 "--output_dirname=bs8 --batchsize=8", "(default: BIN)"),
    ("-m", "unet_infer.compile"): ("python3 -m unet_infer.compile --model UNet_dynamic_sim.onnx --batchsize 8",
                                   "(default: 572)"),
    ("-m", "unet_infer.quantize"): ("python3 -m unet_infer.quantize --model UNet_dynamic_sim.onnx --calib prep_bin",
                                    "(default: 16)"),
    ("-m", "unet_infer.simplify"): ("python3 -m unet_infer.simplify UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx",
                                    "(default: 572)"),
    ("-m", "unet_infer.sample"): ("python3 -m unet_infer.sample --output", "(default: "),
    ("-m", "unet_infer.train"): ("python3 -m unet_infer.train --data", "(default: "),
    ("-m", "unet_infer.stream"): ("python3 -m unet_infer.stream --model", "(default: 572)"),
    ("-m", "unet_infer.report"): ("python3 -m unet_infer.report --work work", "(default: "),
    ("-m", "unet_infer.benchmark"): ("python3 -m unet_infer.benchmark --weights", "(default: "),
    ("-m", "unet_infer.stages"): ("python3 -m unet_infer.stages plan --work W", None),
    ("-m", "unet_infer.predict"): ("python3 -m unet_infer.predict --input photos/ --output masks/ --cutout",
                                   "(default: 0.5)"),
    ("-m", "unet_infer.backends"): ("python3 -m unet_infer.backends --json", None),
    ("-m", "unet_infer.cluster"): ("python3 -m unet_infer.cluster --model", "(default: 572)"),
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


@pytest.mark.parametrize("argv,expected", sorted(PYTHON_TOOLS.items()))
def test_python_help_shows_the_example_and_each_default_once(argv, expected):
    example, default = expected
    proc = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = _flat(proc.stdout)
    assert example in text
    prog = " ".join(argv).replace("-m ", "python3 -m ") if argv[0] == "-m" else argv[0]
    assert text.startswith(f"usage: {prog}")
    if default:
        assert default in text
    assert "(default: None)" not in text and "(default: False)" not in text
    for line in proc.stdout.splitlines():
        assert line.count("(default:") <= 1, line


@pytest.mark.parametrize("script,example", sorted(SHELL_TOOLS.items()))
def test_shell_help_shows_the_example(script, example):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert example in _flat(proc.stdout)
