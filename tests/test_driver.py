"""scripts/run_all.sh end to end on a tiny case: its results against a reference computed here, its
modes (stream, int8, torch), its re-runs (skipped when nothing changed, redone when anything did),
its lock, and its options and early errors."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_infer import cli, driver
from unet_infer.data import load_image, load_label, pair_carvana
from unet_infer.weights import BUNDLED_WEIGHTS
from unet_infer.model import load_unet
from unet_infer.metrics import iou_dice, logits_to_mask
from unet_infer.sample import generate

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "scripts" / "run_all.sh"
WEIGHTS = BUNDLED_WEIGHTS
SIZE = 128


def run_driver(*args, python=None, cwd=None, timeout=600):
    env = {**os.environ, "PYTHON": python or sys.executable, "UNET_INFER_QUIET": "1"}
    return subprocess.run(["bash", str(DRIVER), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def make_data(root, seed=11, views=5):
    generate(root, cars=1, seed=seed, views=views, width=160, height=107, workers=1)
    return root


def reference_ious(data):
    """Per-image IoU of the bundled weights on ``data`` at SIZE, computed here with PyTorch."""
    model, _ = load_unet(WEIGHTS)
    pairs = pair_carvana(data)
    x = torch.from_numpy(np.stack([load_image(image, SIZE) for _, image, _ in pairs]))
    with torch.inference_mode():
        logits = model(x).numpy()
    return {stem: iou_dice(logits_to_mask(out), load_label(mask, SIZE))[0]
            for (stem, _, mask), out in zip(pairs, logits)}


def per_image(work, result="result"):
    """``{name: IoU}`` of WORK/<result>.json."""
    return {r["name"]: r["iou"] for r in json.loads((work / f"{result}.json").read_text())["per_image"]}


def common(data, work, *extra):
    return [f"data={data}", f"weights={WEIGHTS}", f"workdir={work}", f"size={SIZE}", "quiet=1", "loop=1", *extra]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("carvana"))


@pytest.fixture(scope="module")
def expected(tiny_data):
    return reference_ious(tiny_data)


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    """One complete run, bs 2 and 4, shared by the tests that only read it."""
    work = tmp_path_factory.mktemp("finished") / "work"
    proc = run_driver("bs=2,4", *common(tiny_data, work, "backend=onnxruntime"))  # auto may pick openvino
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work, proc


def test_end_to_end_matches_the_reference_then_everything_is_skipped(tiny_data, expected, finished, tmp_path):
    work, proc = finished
    lines = proc.stdout.strip().splitlines()
    assert lines[-2].startswith("IoU ") and "pure inference, bs 2, loop 1, onnxruntime fp32" in lines[-2]
    assert "scored run" in lines[-1] and "for 5 images" in lines[-1]
    for name in ("UNet_dynamic_bs.onnx", "UNet_dynamic_sim.onnx", "UNet_bs2.onnx", "UNet_bs4.onnx",
                 "result/bs2_summary.json", "result/perf_bs4_summary.json", "result.txt", "result.json",
                 "report/summary.md", "report/per_image.csv"):
        assert (work / name).is_file(), name
    outputs = sorted(p.name for p in (work / "result" / "bs4").iterdir())
    assert outputs == sorted(f"{p.stem}.bin" for p in (tiny_data / "train").iterdir())  # renamed by json_parse
    for bs in (2, 4):
        got = per_image(work, f"result_bs{bs}")
        assert got.keys() == expected.keys()
        for stem, iou in expected.items():
            assert got[stem] == pytest.approx(iou, abs=2e-3), stem
    mean = np.mean(list(expected.values()))
    assert json.loads((work / "result.json").read_text())["mean_iou"] == pytest.approx(mean, abs=1e-3)
    assert lines[-2].startswith(f"IoU {json.loads((work / 'result_bs2.json').read_text())['mean_iou']:.6f}")
    perf = json.loads((work / "result" / "perf_bs2_summary.json").read_text())
    assert perf["mode"] == "pure" and perf["filesinfo"] == {} and perf["NPU_compute_time"]["count"] == 1
    scored = json.loads((work / "result" / "bs2_summary.json").read_text())
    assert scored["mode"] == "files" and len(scored["filesinfo"]) == 5 and scored["weights"].startswith(
        "unet_carvana.pth sha256:")

    # the same command again, its data and work folder named through symlinks (the same data): skipped
    links = tmp_path / "links"
    links.mkdir()
    (links / "data").symlink_to(tiny_data)
    (links / "work").symlink_to(work)
    again = run_driver("bs=2,4", *common(links / "data", links / "work", "backend=onnxruntime"))
    assert again.returncode == 0, again.stderr
    for stage in ("preprocess", "export", "simplify", "compile_onnxruntime_fp32_bs2", "infer_bs4", "score_bs4",
                  "perf_bs2"):
        assert f"{stage}: complete, skipped" in again.stdout
    assert again.stdout.strip().splitlines()[-2].split(", throughput")[0] == lines[-2].split(", throughput")[0]


def _killing_python(tmp_path, pattern, action):
    """A stand-in interpreter that runs the real one and then dies (exit 137) the first time its
    command line contains ``pattern``, after ``action`` (shell code) damaged the stage's outputs."""
    flag = tmp_path / f"killed-{abs(hash(pattern))}"
    script = tmp_path / "python"
    script.write_text(f"""#!/usr/bin/env bash
if [[ "$*" == *"{pattern}"* && ! -e {flag} ]]; then
    touch {flag}
    {sys.executable} "$@"
    {action}
    exit 137
fi
exec {sys.executable} "$@"
""")
    script.chmod(0o755)
    return script


def test_a_torch_run_killed_half_way_is_redone_and_scores_the_checkpoint_itself(tiny_data, expected, tmp_path):
    work = tmp_path / "work"
    python = _killing_python(tmp_path, "unet_infer.bench --model", f'ls {work}/result/bs2/*.bin | head -n 1 | xargs rm -f')
    first = run_driver("bs=2", *common(tiny_data, work, "backend=torch", "loop=0"), python=python)
    assert first.returncode == 1 and "stage infer_bs2 failed" in first.stderr and "resume" in first.stderr
    second = run_driver("bs=2", *common(tiny_data, work, "backend=torch", "loop=0"), python=python)
    assert second.returncode == 0, second.stderr
    assert "removed the earlier run bs2" in second.stdout
    assert len(list((work / "result" / "bs2").glob("*.bin"))) == 5
    assert sorted(p.name for p in (work / "result").iterdir() if p.name.startswith("bs2")) == [
        "bs2", "bs2.log", "bs2_summary.json"]  # nothing set aside to pile up
    assert json.loads((work / "result.json").read_text())["n_images"] == 5
    # the torch backend runs the checkpoint itself: nothing exported or compiled, the reference's IoU
    assert not list(work.glob("*.onnx"))
    got = per_image(work)
    for stem, iou in expected.items():
        assert got[stem] == pytest.approx(iou, abs=2e-3), stem
    assert json.loads((work / "result" / "bs2_summary.json").read_text())["backend"] == "torch"


def test_another_seed_replaces_the_generated_sample_and_the_results_follow_it(tmp_path):
    """The data changed (here: the generated sample, for another seed): every stage from preprocess on
    runs again, the images no longer there lose their preprocessed files and are not scored."""
    work = tmp_path / "work"
    args = [f"weights={WEIGHTS}", f"workdir={work}", f"size={SIZE}", "quiet=1", "loop=0", "cars=1", "backend=torch"]
    assert run_driver("bs=8", *args, "seed=3", "labels=none").returncode == 0  # the first sample, not scored
    first = [p.stem for p in (work / "prep_bin").iterdir()]
    second_run = run_driver("bs=8", *args, "seed=4")
    assert second_run.returncode == 0, second_run.stderr
    second = per_image(work)
    assert len(first) == len(second) == 16 and not set(first) & set(second)
    assert sorted(p.stem for p in (work / "sample" / "train").iterdir()) == sorted(second)
    assert sorted(p.stem for p in (work / "prep_bin").iterdir()) == sorted(second)
    assert "removed 16 .bin file(s) of images no longer in" in second_run.stdout
    for stage in ("preprocess", "infer_bs8", "score_bs8"):
        assert f"{stage}: complete, skipped" not in second_run.stdout, stage
    assert json.loads((work / "result.json").read_text())["n_images"] == 16


@pytest.fixture(scope="module")
def unscored(tmp_path_factory):
    """Data with a mask missing: the run that needs it refused, then one with labels=none (torch, bs 2,
    loop 1), shared by the tests that read it and by the one that times it again."""
    root = tmp_path_factory.mktemp("unscored")
    data = make_data(root / "data", seed=31, views=2)
    next((data / "train_masks").iterdir()).unlink()
    work = root / "work"
    refused = run_driver("bs=2", *common(data, work, "backend=torch"))
    unprepared = not (work / "prep_bin").exists()
    unscored = run_driver("bs=2", *common(data, work, "labels=none", "backend=torch"))
    return types.SimpleNamespace(data=data, work=work, refused=refused, unprepared=unprepared, run=unscored)


def test_a_missing_mask_fails_before_any_work_and_labels_none_runs(unscored):
    proc = unscored.refused
    assert proc.returncode == 2 and "mask not found" in proc.stderr and "labels=none" in proc.stderr
    assert "resume" not in proc.stderr and unscored.unprepared
    assert unscored.run.returncode == 0, unscored.run.stderr
    closing = unscored.run.stdout.strip().splitlines()[-1]
    assert closing.startswith("throughput ") and "scored run" not in closing, closing
    assert "inference run" in closing and closing.endswith("for 2 images, not scored"), closing
    assert len(list((unscored.work / "result" / "bs2").glob("*.bin"))) == 2


def test_acl_without_the_ascend_tools_fails_before_any_work(tiny_data, tmp_path):
    proc = run_driver("bs=2", *common(tiny_data, tmp_path / "work", "backend=acl"))
    assert proc.returncode == 2 and "atc (CANN)" in proc.stderr and "backend=onnxruntime" in proc.stderr
    assert not (tmp_path / "work" / "prep_bin").exists()
    precision = run_driver("bs=2", *common(tiny_data, tmp_path / "work", "backend=acl", "precision=fp32"))
    assert precision.returncode == 2 and "not available on the acl backend" in precision.stderr


def test_a_second_run_in_a_busy_workdir_is_refused(tiny_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with open(work / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = run_driver("bs=2", *common(tiny_data, work))
    assert proc.returncode == 2 and "another run is working in" in proc.stderr
    assert "waiting up to 5 s" in proc.stdout  # refused only after the wait
    assert sorted(p.name for p in work.iterdir()) == [".lock"]


def _ctrl_c_as_at_a_terminal():
    """In the driver's process: SIGINT as a shell at a terminal gets it (default action, not blocked),
    whatever the test process inherited or set up (a child inherits an ignored or blocked SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_state():
    with open("/proc/self/status") as status:
        return [line.strip() for line in status if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]


# A stand-in stage that says when it is under way, then waits for Ctrl-C: in a command's run_cli, or
# outside it (unet_infer's excepthook: Ctrl-C while a command imports).
SLOW_STAGE = """import pathlib, sys, time
mode, started = sys.argv[1], pathlib.Path(sys.argv[2])
if mode == "import":
    import unet_infer
    started.touch()
    time.sleep(30)
else:
    from unet_infer import cli
    sys.exit(cli.run_cli(lambda argv: (started.touch(), time.sleep(30))))
"""


@pytest.mark.parametrize("command,mode", [
    ("unet_infer.preprocess", "run_cli"),  # during a Python stage
    ("unet_infer.preprocess", "import"),  # while a stage imports
    ("unet_infer.preprocess", "shell"),  # during a command that is not Python
    ("unet_infer.stages check infer ", "run_cli"),  # between stages: the driver's own question
], ids=["python-stage", "python-import", "other-command", "between-stages"])
def test_ctrl_c_exits_130_interrupted_once(command, mode, tiny_data, tmp_path):
    started = tmp_path / "started"  # the stand-in says so itself: no polling of ps
    slow_stage = tmp_path / "slow_stage.py"
    slow_stage.write_text(SLOW_STAGE)
    instead = (f"touch {started}; sleep 30; exit 0" if mode == "shell"
               else f"exec {sys.executable} {slow_stage} {mode} {started}")
    slow = tmp_path / "python"
    slow.write_text(f"#!/usr/bin/env bash\nif [[ \"$*\" == *\"{command}\"* ]]; then {instead}; fi\n"
                    f"exec {sys.executable} \"$@\"\n")
    slow.chmod(0o755)
    env = {**os.environ, "PYTHON": str(slow), "UNET_INFER_QUIET": "1"}
    proc = subprocess.Popen(["bash", str(DRIVER), "bs=2", *common(tiny_data, tmp_path / "work", "backend=torch")],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_ctrl_c_as_at_a_terminal)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not started.exists() and proc.poll() is None:
        time.sleep(0.2)
    assert started.exists(), ("the slow command never started", proc.poll())
    time.sleep(0.5)  # into the sleep
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out[-2000:], err[-2000:], _signal_state())
    assert err.count("interrupted") == 1 and "error: interrupted" in err, err  # the driver's line, once
    assert "resume" not in err and "Traceback" not in err, err
    with open(tmp_path / "work" / ".lock", "a") as lock:  # the interrupted run's lock went with it
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_lock_held_a_moment_longer_is_waited_for(tmp_path):
    """As after ``kill -9`` of a run: its stages still hold WORK/.lock for a moment."""
    work = tmp_path / "work"
    work.mkdir()
    holder = subprocess.Popen(["flock", str(work / ".lock"), "sleep", "3"])  # the driver waits up to 5 s
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the holder has it
            with open(work / ".lock", "a") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    break
            time.sleep(0.05)
        # past the lock, the missing checkpoint is the first thing refused
        proc = run_driver("bs=2", f"workdir={work}", f"weights={tmp_path}/none.pth", timeout=60)
    finally:
        holder.wait(timeout=30)
    assert "waiting up to 5 s" in proc.stdout, proc.stdout
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr, proc.stderr
    assert "another run" not in proc.stderr


def test_fp32_then_int8_in_one_workdir_keeps_both_and_reports_both(tiny_data, finished):
    """A precision change does not replace the earlier results: both kept (the first run under the
    plain names), both in the report, each run's closing lines its own; a re-run of either skips.
    The fp32 run is the shared one (``finished``, bs 2 and 4): the int8 run (bs 2) adds its own names
    beside it."""
    work, _ = finished
    fp32 = {name: (work / name).read_bytes() for name in ("result_bs2.json", "result_bs4.json", "result.json",
                                                            "result/bs4_summary.json")}
    int8 = ["bs=2", *common(tiny_data, work, "backend=onnxruntime", "precision=int8")]
    second = run_driver(*int8)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "removed" not in second.stdout
    assert {name: (work / name).read_bytes() for name in fp32} == fp32  # the fp32 results untouched
    for name in ("result_onnxruntime_int8_bs2.json", "result_onnxruntime_int8.json",
                 "result/onnxruntime_int8_bs2_summary.json", "result/perf_onnxruntime_int8_bs2_summary.json"):
        assert (work / name).is_file(), name
    closing = second.stdout.strip().splitlines()[-1]
    assert closing.startswith("IoU ") and "bs 2, loop 1, onnxruntime int8" in closing, closing
    rows = [line for line in (work / "report" / "summary.md").read_text().splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [(c[0], c[10]) for c in cells if c[9] == "onnxruntime"] == [("2", "fp32"), ("2", "int8")]
    for args, record in ((["bs=2,4", *common(tiny_data, work, "backend=onnxruntime")], "infer_bs4"),
                         (int8, "infer_onnxruntime_int8_bs2")):
        again = run_driver(*args)
        assert again.returncode == 0 and f"{record}: complete, skipped" in again.stdout, again.stdout + again.stderr
        assert "removed" not in again.stdout


def test_openvino_int8_stream_scores_the_int8_model_it_made_within_the_int8_tolerance(tiny_data, expected, finished):
    """In the shared run's folder (its export and simplified model are reused): OpenVINO INT8, calibrated
    and scored on the images themselves (stream=1), beside the earlier results."""
    work, _ = finished
    earlier = {p: p.read_bytes() for p in (*work.glob("result*.json"), *(work / "result").rglob("*.bin"))}
    proc = run_driver("bs=2", *common(tiny_data, work, "backend=openvino", "precision=int8", "stream=1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "simplify: complete, skipped" in proc.stdout and "removed" not in proc.stdout
    assert {p: p.read_bytes() for p in earlier} == earlier  # the other runs' results untouched
    assert not set((work / "result").rglob("*.bin")) - set(earlier)  # streamed: no output files written
    calibrated = json.loads((work / ".stages" / "quantize_openvino.json").read_text())["inputs"]
    assert str((tiny_data / "train").resolve()) in calibrated  # on the images themselves, not prep_bin
    assert (work / "UNet_int8.xml").is_file() and (work / "UNet_int8_bs2.xml").is_file()
    assert (work / "UNet_int8_bs2.bin").is_file()  # the IR's weights
    summary = json.loads((work / "result" / "openvino_int8_bs2_summary.json").read_text())
    assert summary["backend"] == "openvino" and summary["precision"] == "int8" and summary["mode"] == "stream"
    assert summary["weights"].startswith("unet_carvana.pth sha256:")  # carried into the IR
    assert "openvino int8" in proc.stdout.strip().splitlines()[-1]
    got = per_image(work, "result_openvino_int8_bs2")
    assert got.keys() == expected.keys()
    # the driver's scores are those of the INT8 model it made, run here directly on the same images
    import openvino as ov
    compiled = ov.Core().compile_model(str(work / "UNet_int8_bs2.xml"), "CPU")
    pairs = pair_carvana(tiny_data)
    for start in range(0, len(pairs), 2):
        batch = pairs[start:start + 2]
        x = np.stack([load_image(image, SIZE) for _, image, _ in batch] * 2)[:2]  # the last batch padded
        logits = compiled(x)[0]
        for (stem, _, mask), out in zip(batch, logits):
            assert got[stem] == pytest.approx(iou_dice(logits_to_mask(out), load_label(mask, SIZE))[0], abs=2e-3), stem
    # INT8 tolerance: the mean IoU within 0.03 of the PyTorch fp32 reference, each image within 0.15. These
    # 160 x 107 generated cars at 128 x 128 are far from the real photos at 572 the model was trained on
    # (mean IoU 0.78, one image 0.35), and INT8 moves an image's IoU by up to 0.12 here; on the real
    # photos of val-cars at 572 it moves the mean by 0.0003 (docs/figures.md). A broken INT8 path moves
    # it by far more.
    assert np.mean(list(got.values())) == pytest.approx(np.mean(list(expected.values())), abs=0.03)
    for stem, iou in expected.items():
        assert got[stem] == pytest.approx(iou, abs=0.15), stem


def test_an_unreadable_image_stops_the_run_unless_unreadable_skip(tmp_path, make_carvana):
    from tiny_unet import tiny_unet
    data = make_carvana(tmp_path / "carvana")
    (data.train / "broken.jpg").write_bytes(b"\xff\xd8 not a JPEG")
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_unet().state_dict(), weights)
    args = ["bs=2", f"data={data.root}", f"weights={weights}", f"workdir={tmp_path / 'work'}", "size=32", "quiet=1",
            "loop=0", "backend=torch", "labels=none"]
    strict = run_driver(*args)
    assert strict.returncode == 2 and "unreadable=skip" in strict.stderr and "broken.jpg" in strict.stderr
    skipped = run_driver(*args, "unreadable=skip")
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "skipped 1 unreadable image(s)" in skipped.stdout and "broken.jpg" in skipped.stdout
    assert "for 4 images, not scored" in skipped.stdout.strip().splitlines()[-1]
    again = run_driver(*args)  # the default does not go on without it, though preprocessing is complete
    assert again.returncode == 2 and "1 image(s) not converted" in again.stderr, again.stdout + again.stderr


def test_retime_runs_the_timing_again_and_keeps_the_rest(unscored):
    work, args = unscored.work, ["bs=2", *common(unscored.data, unscored.work, "labels=none", "backend=torch")]
    assert unscored.run.returncode == 0
    timed = (work / "result" / "perf_bs2_summary.json").read_text()
    again = run_driver(*args, "retime=1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "infer_bs2: complete, skipped" in again.stdout and "perf_bs2: complete" not in again.stdout
    assert any(line.startswith("removed the earlier run perf_bs2 (") and line.endswith(": timed again (retime=1)")
               for line in again.stdout.splitlines()), again.stdout
    assert (work / "result" / "perf_bs2_summary.json").read_text() != timed  # a new measurement
    assert "perf_bs2: complete, skipped" in run_driver(*args).stdout


def test_help_and_bad_options(tmp_path, capsys):
    help_text = run_driver("--help").stdout
    for key in ("bs=", "data=", "weights=", "workdir=", "backend=", "precision=", "stream=", "loop=", "labels=",
                "unreadable=", "retime=", "scripts/run_all.sh bs=8"):
        assert key in help_text
    # the plan's own checks, in this process (each option's form: test_stages.py): one line, status 2
    for bad, words in ((["backend=tpu"], "unknown backend 'tpu'"),
                       (["precision=int8", "backend=torch"], "not available on the torch backend"),
                       ([f"weights={tmp_path}/none.pth"], "checkpoint not found")):
        assert cli.run_cli(driver.main, ["plan", "bs=8", *bad, f"workdir={tmp_path}/w", "quiet=1"]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and len(err.splitlines()) == 1, (bad, err)
    # the script says them as the package does, before any work; the data are checked by stage preflight
    proc = run_driver("bs=8", "size=8", f"workdir={tmp_path}/w")
    assert proc.returncode == 2 and proc.stderr.startswith("error: size=8: ") and len(proc.stderr.splitlines()) == 1
    proc = run_driver("bs=8", f"data={tmp_path}", f"workdir={tmp_path}/w")
    assert proc.returncode == 2 and "error:" in proc.stderr and "train" in proc.stderr, proc.stderr
    assert not (tmp_path / "w" / "sample").exists()


def test_a_missing_tool_fails_before_any_work(tmp_path):
    """A package a later stage imports (here onnxsim, for simplify) is looked for before the first stage."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['onnxsim'] = None  # as if not installed\n")
    work = tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "UNET_INFER_QUIET": "1",
           "PYTHONPATH": f"{hide}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(["bash", str(DRIVER), "bs=2", f"workdir={work}", "backend=onnxruntime", "quiet=1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not installed: onnxsim (stage simplify)" in proc.stderr and "requirements.txt" in proc.stderr
    assert not (work / "sample").exists() and not (work / "prep_bin").exists()
