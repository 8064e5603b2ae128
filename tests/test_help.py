"""Every script's --help names the program the user typed, shows the guide's (or its own) example
command and each default once (none on a flag), and exits 0; a shell script's unknown option is one
line that says where the help is."""

import os
import re
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
    ("-m", "unet_infer.preprocess"): ("python3 preprocess_unet_pth.py --src_path=./carvana/train "
                                      "--save_bin_path=./prep_bin", "(default: 572)"),
    ("-m", "unet_infer.export"): ("python3 -m unet_infer.export ./UNet.pth ./UNet_dynamic_bs.onnx",
                                  "(default: 0.0001)"),
    ("-m", "unet_infer.rename"): ("python3 -m unet_infer.rename --output=result/bs8/", None),
    ("-m", "unet_infer.postprocess"): ("python3 postprocess_unet_pth.py --output=result/bs8 "
                                       "--label=./carvana/train_masks --result=./result.txt", "(default: 572)"),
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
    ("-m", "unet_infer.speed"): ("python3 -m unet_infer.speed --weights", "(default: "),
    ("-m", "unet_infer.stages"): ("python3 -m unet_infer.stages check preprocess --work W", None),
    ("-m", "unet_infer.stages", "check"): ("python3 -m unet_infer.stages check preprocess --work W", None),
    ("-m", "unet_infer.stages", "done"): ("python3 -m unet_infer.stages done preprocess --work W", None),
    ("-m", "unet_infer.predict"): ("python3 -m unet_infer.predict --input photos/ --output masks/ --cutout",
                                   "(default: 0.5)"),
    ("-m", "unet_infer.backends"): ("python3 -m unet_infer.backends --precision bf16", None),
    ("-m", "unet_infer.cluster"): ("python3 -m unet_infer.cluster --model", "(default: 572)"),
}

SHELL_TOOLS = {
    "run_all.sh": "scripts/run_all.sh bs=8",
    "onnxsim.sh": "scripts/onnxsim.sh UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx",
    "atc.sh": "scripts/atc.sh --model=UNet_dynamic_sim.onnx --bs=8",
    "benchmark.sh": "scripts/benchmark.sh",
    "train_bundled.sh": "scripts/train_bundled.sh",
}

# the key=value scripts: an unknown option is refused in one line
KEY_VALUE_SCRIPTS = ("run_all.sh", "benchmark.sh", "train_bundled.sh")


def _flat(text):
    return " ".join(text.replace("\\\n", " ").split())


def _typed(argv):
    """The program as the user types it: ``python3 -m unet_infer.X`` for a module, else the script."""
    return " ".join(("python3", *argv)) if argv[0] == "-m" else argv[0]


def check_defaults(text):
    """Each default once, none that is empty, and none on a flag (given or not: it has no value)."""
    for line in text.splitlines():
        assert line.count("(default:") <= 1, line
    for wrong in ("(default: None)", "(default: True)", "(default: False)", "(default: [])"):
        assert wrong not in _flat(text), wrong


# what a user cannot follow: a module's or class's inner name (``workdir.Workdir``, Backend.compile_options,
# loop.py, bench/run.py); a command to type (``python3 -m unet_infer.stream``, json_parse.py) is fine
INTERNAL = re.compile(r"``(?!unet_infer\.)[a-z_]+\.[A-Za-z_]+``|\b(?:unet_infer|bench)/[a-z_/]+\.py\b|\bloop\.py\b"
                      r"|\b[A-Z][a-z]+\.[a-z_]+\b|\b[a-z]+\.[A-Z][a-z]+\b")
INTERNAL_LEFT = {("-m", "unet_infer.report"), ("-m", "unet_infer.stages")}  # descriptions still to reword


def check_words(text):
    """The help speaks of options, files and commands, not of the package's inner names."""
    assert not INTERNAL.findall(_flat(text)), INTERNAL.findall(_flat(text))


def check_usage(text, prog):
    """The usage line names the program the user typed (wrapped usage lines included)."""
    first = _flat(text)
    assert first.startswith(f"usage: {prog} ") or first == f"usage: {prog}", first[:120]


@pytest.mark.parametrize("argv,expected", sorted(PYTHON_TOOLS.items()))
def test_python_help_names_the_program_and_shows_the_example_and_each_default_once(argv, expected):
    example, default = expected
    proc = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = _flat(proc.stdout)
    assert example in text
    check_usage(proc.stdout, _typed(argv))
    if default:
        assert default in text
    check_defaults(proc.stdout)
    if argv not in INTERNAL_LEFT:
        check_words(proc.stdout)


@pytest.mark.parametrize("script,example", sorted(SHELL_TOOLS.items()))
def test_shell_help_names_the_script_and_shows_the_example(script, example):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert example in _flat(proc.stdout)
    check_usage(proc.stdout, f"scripts/{script}")
    check_defaults(proc.stdout)


@pytest.mark.parametrize("script", KEY_VALUE_SCRIPTS)
@pytest.mark.parametrize("arg", ["foo=1", "frobnicate"])
def test_an_unknown_option_is_one_line_naming_it_and_the_help(script, arg, tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "scripts" / script), arg], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f"error: unknown option '{arg}' (options are key=value; "
                           f"see scripts/{script} --help)\n"), proc.stderr


def test_the_checks_catch_each_mistake():
    """The checks above fail on the mistakes they are for (so that they can fail)."""
    flag_default = "  --no_check            skip the check (default: True)\n"
    for bad in (flag_default, flag_default.replace("True", "False"), "  --input INPUT   a file (default: [])\n"):
        with pytest.raises(AssertionError):
            check_defaults(f"usage: x\n\noptions:\n{bad}")
    for bad in ("usage: python3 -m unet_infer.simplify [-h] input", "usage: scripts/onnxsim.shx [-h]"):
        with pytest.raises(AssertionError):
            check_usage(bad, "scripts/onnxsim.sh")
    check_usage("usage: scripts/onnxsim.sh [-h] input output [size]\n", "scripts/onnxsim.sh")
    for bad in ("the one loop (``loop.py``)", "(``Backend.compile_options``)", "(see bench/devices.py)",
                "``summary.merge_summaries``", "each Journal.append"):
        with pytest.raises(AssertionError):
            check_words(f"usage: x\n\n{bad}\n")
    check_words("python3 -m unet_infer.stream (``python3 -m unet_infer.export``), json_parse.py, UNet_bs8.onnx")
    assert _typed(("-m", "unet_infer.stages", "check")) == "python3 -m unet_infer.stages check"
