"""The guide's own command lines, typed in its order in its layout, work to the end.

A fresh copy of the project is laid out as the guide lays out its folder (``./carvana/train``,
``./carvana/train_masks``, ``./UNet.pth``, ``./Pytorch_UNet``) and each line of the guide runs in
it, in the guide's order, with only the two substitutions the README names: ``python3 -m
ais_bench`` -> ``python3 -m unet_infer.bench`` and ``atc`` -> ``scripts/atc.sh``. The NPU is a
stand-in: ``atc`` compiles with ``python3 -m unet_infer.compile`` (so the batch that onnxsim
pinned to 1 must be re-batched), and ``ais_bench`` is the package's runner on ONNX Runtime (the
flags the package hands it are checked; it times 2 of the 100 runs the performance line asks for).
Then ``scripts/run_all.sh bs=8`` runs in the same folder, after the guide's ``mv``, and its scores
must be the guide flow's, image for image.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "seed" / "000_3bfae48a3d3260dd.txt"
BATCH = 2

# The guide's lines, verbatim, in its order (the clone, install and `source set_env.sh` lines are
# left out: offline, installed, and no CANN here).
GUIDE = [
    "python3 preprocess_unet_pth.py --src_path=./carvana/train --save_bin_path=./prep_bin",
    "mv unet_pth2onnx.py ./Pytorch_UNet",
    "python3 ./Pytorch_UNet/unet_pth2onnx.py ./UNet.pth ./UNet_dynamic_bs.onnx",
    'python3 -m onnxsim --dynamic-input-shape --input-shape="1,3,572,572" UNet_dynamic_bs.onnx UNet_dynamic_sim.onnx',
    "npu-smi info",
    "atc --model=UNet_dynamic_sim.onnx --framework=5 --output=UNet_bs${batch_size} --input_format=NCHW "
    "--input_shape='actual_input_1:${batch_size},3,572,572' --log=info --soc_version=Ascend${chip_name}",
    "python3 -m ais_bench --model=UNet_bs${batch_size}.om --input=./prep_bin --output=result "
    "--output_dirname=bs${batch_size} --batchsize=${batch_size}",
    "python3 json_parse.py --output=result/bs${batch_size}/",
    "python3 postprocess_unet_pth.py --output=result/bs${batch_size} --label=./carvana/train_masks --result=./result.txt",
    "python3 -m ais_bench --model=UNet_bs${batch_size}.om --loop=100 --batchsize=${batch_size}",
]
SUBSTITUTIONS = [("python3 -m ais_bench ", "python3 -m unet_infer.bench "), ("atc --model", "scripts/atc.sh --model")]

NPU_SMI = """#!/bin/bash
cat <<'TXT'
+-------------------+-----------------+------------------------------------------------------+
| NPU     Name      | Health          | Power(W)     Temp(C)           Hugepages-Usage(page) |
| Chip    Device    | Bus-Id          | AICore(%)    Memory-Usage(MB)                        |
+===================+=================+======================================================+
| 0       310P3     | OK              | 15.8         42                0    / 0              |
| 0       0         | 0000:82:00.0    | 0            1074 / 21534                            |
+===================+=================+======================================================+
TXT
"""
# A stand-in atc: the guide's flags in, an .om out (an ONNX model fixed at the batch of --input_shape).
ATC = """#!/bin/bash
set -euo pipefail
for arg in "$@"; do
    case $arg in
        --model=*) model=${arg#*=} ;;
        --output=*) output=${arg#*=} ;;
        --input_shape=*) shape=${arg#*:}; IFS=, read -r bs _ _ size <<<"$shape" ;;
    esac
done
python3 -m unet_infer.compile --backend onnxruntime --model "$model" --batchsize "$bs" --size "$size" \\
    --output "$output.onnx"
mv "$output.onnx" "$output.om"
echo "ATC run success"
"""
# A stand-in ais_bench: the package's runner on ONNX Runtime, for the stand-in atc's models. It notes
# the flags it was handed, and times 2 runs of a --loop: the NPU runs a batch of 2 at 572 in about
# 27 ms (the guide's 75 images/s), this CPU in about 300 ms, and the 100 runs would be most of the test.
AIS_BENCH = """import os, sys
from unet_infer.bench.runner import main
from unet_infer.cli import run_cli
with open(os.environ["AIS_BENCH_CALLS"], "a") as calls:
    calls.write(" ".join(sys.argv[1:]) + "\\n")
args = [f"--loop={min(int(a[7:]), 2)}" if a.startswith("--loop=") else a for a in sys.argv[1:]]
sys.exit(run_cli(main, args + ["--backend=onnxruntime", "--quiet"]))
"""


def guide_lines():
    lines = []
    for line in GUIDE:
        for old, new in SUBSTITUTIONS:
            line = line.replace(old, new)
        lines.append(line)
    return lines


def lay_out(tmp_path):
    """A fresh copy of the project (the files git would clone, committed or not), the guide's layout."""
    folder = tmp_path / "UNet"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    for name in listed:
        src = ROOT / name
        if src.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, folder / name)
    (folder / "Pytorch_UNet").mkdir()  # the guide's clone of milesial/Pytorch-UNet (offline here)
    shutil.copy(ROOT / "weights" / "unet_carvana.pth", folder / "UNet.pth")
    subprocess.run([sys.executable, "-m", "unet_infer.sample", "--output", str(folder / "carvana"), "--cars", "1",
                    "--views", "4", "--width", "480", "--height", "320", "--seed", "5", "--quiet"],
                   check=True, cwd=ROOT, capture_output=True)
    tools = tmp_path / "npu"
    (tools / "ais_bench").mkdir(parents=True)
    (tools / "ais_bench" / "__init__.py").write_text("")
    (tools / "ais_bench" / "__main__.py").write_text(AIS_BENCH)
    for name, text in (("npu-smi", NPU_SMI), ("atc", ATC)):
        (tools / name).write_text(text)
        (tools / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}", "PYTHONPATH": f"{folder}:{tools}",
           "UNET_INFER_QUIET": "1", "ASCEND_SET_ENV": str(tmp_path / "no-cann" / "set_env.sh"),
           "AIS_BENCH_CALLS": str(tools / "ais_bench_calls.txt")}
    return folder, env


def shell(line, folder, env):
    """One line as a user types it, with the guide's two shell variables set."""
    script = f"batch_size={BATCH}; chip_name=310P3\n{line}\n"
    return subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=600)


def scores(path):
    """``{name: (IoU, Dice)}`` from a result.txt."""
    rows = {}
    for line in Path(path).read_text().splitlines()[1:]:
        name, iou, dice = line.split()
        rows[name] = (iou, dice)
    return rows


def test_the_guide_literally_then_the_driver_in_the_same_folder(tmp_path):
    folder, env = lay_out(tmp_path)
    for line in guide_lines():
        proc = shell(line, folder, env)
        if "--input_shape='actual_input_1:${batch_size}" in line:
            # The guide's single quotes keep ${batch_size} from the shell: said in one line, then
            # the line the message asks for (double quotes) runs.
            assert proc.returncode == 2, proc.stdout + proc.stderr
            error = proc.stderr.strip().splitlines()
            assert len(error) == 1 and "${batch_size}" in error[0] and "not expanded" in error[0], proc.stderr
            proc = shell(line.replace("'", '"'), folder, env)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        if line.startswith("python3 -m onnxsim"):
            assert pinned_batch(folder / "UNet_dynamic_sim.onnx") == "1"  # what makes compile re-batch
    assert not (folder / "unet_pth2onnx.py").exists() and (folder / "Pytorch_UNet" / "unet_pth2onnx.py").is_file()
    assert (folder / f"UNet_bs{BATCH}.om").is_file()
    guide = scores(folder / "result.txt")
    assert len(guide) == 4 and all(float(iou) > 0.5 for iou, _ in guide.values()), guide
    assert "throughput 1000*batchsize" in proc.stdout  # the performance command's summary
    handed = (folder.parent / "npu" / "ais_bench_calls.txt").read_text().splitlines()
    assert len(handed) == 2 and handed[0].startswith(f"--model=UNet_bs{BATCH}.om --input=./prep_bin ")
    assert handed[1].split() == [f"--model=UNet_bs{BATCH}.om", "--loop=100", f"--batchsize={BATCH}"], handed

    # The README's main command, with the guide's data and weights, after the guide's mv. Its batch
    # (8: one padded batch of the 4 images) is not the guide run's (2): the scores agree to float noise.
    # Scores only (loop=0): the guide's performance line has run above.
    proc = subprocess.run(["scripts/run_all.sh", "bs=8", "data=./carvana", "weights=./UNet.pth",
                           "backend=onnxruntime", "loop=0", "quiet=1"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    driver = scores(folder / "work" / "result.txt")
    assert driver.keys() == guide.keys()
    for name, (iou, dice) in guide.items():
        assert abs(float(driver[name][0]) - float(iou)) < 1e-4 and abs(float(driver[name][1]) - float(dice)) < 1e-4


def pinned_batch(path):
    """The first input's batch axis as written in the model: a number, or the name of a dynamic axis."""
    import onnx
    dim = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return str(dim.dim_value) if dim.HasField("dim_value") else dim.dim_param


GUIDE_SHA256 = "0bd89b5134b1bca8"  # of the lines above, as checked against the guide's text


def test_the_lines_are_the_guides():
    """The lines are the guide's: checked against its text where it lies beside this checkout
    (shared/seed), and everywhere against the digest recorded when they were, so that an edit of
    a line fails even where the guide's text is not at hand."""
    assert hashlib.sha256("\n".join(GUIDE).encode()).hexdigest()[:16] == GUIDE_SHA256
    if SEED.is_file():
        text = SEED.read_text(encoding="utf-8")
        missing = [line for line in GUIDE if line not in text]
        assert not missing, missing
