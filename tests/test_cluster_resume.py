"""The cluster resumes at batch granularity: every planned batch is recorded by the driver as its
rows come back (in whatever order the actors finish); after a stop the same command scores only
the batches not recorded (they are not even sent to Ray) and writes the uninterrupted run's files.

- the record itself, without Ray: batches recorded out of order, an incomplete one left out, the
  replay giving back the scores, masks, unreadable images and each actor's batches and times; a
  record that is not this plan's is set aside;
- the driver killed (kill -9 of its process group, its local Ray with it) at about half of a run:
  the same command finishes the rest, and its summary says how much it resumed; neither run leaves
  anything outside the work folder (its local Ray's files in WORK/.ray) or any process behind.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import _make_carvana
from test_footprint import STALE, processes_naming, tree
from tiny_unet import tiny_onnx
from unet_infer import stream
from unet_infer.cli import run_cli
from unet_infer.cluster import actor_summaries, local, pipeline
from unet_infer.cluster.collect import Recorder, plan_batches
from unet_infer.data import pair_carvana
from unet_infer.journal import Journal, pack_mask, scan

ROOT = Path(__file__).resolve().parents[1]
SIZE, N_IMAGES, BATCH = 32, 24, 2
N_BATCHES = N_IMAGES // BATCH
BAD = 7  # an unreadable image (its batch records it as such)
RUN_TIMEOUT = 300


# ---- shared with test_cluster_nodes.py: the data, the model, the single-process reference ----

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = _make_carvana(tmp_path_factory.mktemp("cluster_data") / "carvana", n=N_IMAGES)
    data.stems = [stem for stem, _, _ in pair_carvana(data.root)]
    data.image(data.stems[BAD]).write_bytes(b"not a jpeg")
    return data


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("cluster_model"), size=SIZE)


def result_args(work):
    return ["--result", str(work / "result_bs2.txt"), "--summary", str(work / "result" / "bs2_summary.json")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model, data):
    """The single-process stream's files (exit 2: it names the unreadable image after writing them)."""
    work = tmp_path_factory.mktemp("cluster_reference")
    argv = ["--model", str(model), "--data", str(data.root), "--batchsize", str(BATCH), "--size", str(SIZE),
            "--threads", "1", "--workers", "1", "--quiet", *result_args(work)]
    assert run_cli(stream.main, argv) == 2
    return work


def outputs(work):
    """``{relative path: bytes}`` of what must not depend on how the run went: the result files and
    the report's masks."""
    files = [work / "result_bs2.txt", work / "result_bs2.json", *sorted((work / "result" / "bs2_masks").iterdir())]
    return {str(p.relative_to(work)): p.read_bytes() for p in files}


def per_image(work):
    return [(r["name"], r["iou"], r["dice"]) for r in json.loads((work / "result_bs2.json").read_text())["per_image"]]


def summary_of(work):
    return json.loads((work / "result" / "bs2_summary.json").read_text())


def cluster_argv(model, data, work, *more):
    return [sys.executable, "-m", "unet_infer.cluster", "--model", str(model), "--data", str(data.root),
            "--batchsize", str(BATCH), "--size", str(SIZE), "--actors", "2", "--threads", "1", "--workers", "1",
            "--quiet", *result_args(work), *more]


def start(argv, env):
    """The command in a process group of its own, its output in a file (read by :func:`ended`)."""
    out = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    proc.out = out
    return proc


def ended(proc, timeout=RUN_TIMEOUT):
    """``(exit status, output)``; a run past ``timeout`` is killed (its group) and fails the test."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.out.seek(0)
        pytest.fail(f"the run took over {timeout} s:\n{proc.out.read()[-4000:]}")
    proc.out.seek(0)
    text = proc.out.read()
    proc.out.close()
    return proc.returncode, text


def wait_for_units(record, count, proc, timeout=RUN_TIMEOUT):
    """Until ``record`` holds ``count`` units (or the run ended, or ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if record.is_file() and record.read_bytes().count(b'{"unit":') >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{record}: not {count} units before the run ended (exit status {proc.poll()})")


def kill_by_folder(folder):
    """SIGKILL the processes (of this test's own) whose output goes to ``folder``: Ray's workers,
    which run in process groups of their own."""
    marker = str(folder)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(entry / "fd" / fd).startswith(marker) for fd in ("1", "2")):
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


def check_resumed(work, reference, data, units):
    """The resumed run wrote the reference's files, and scored only what ``units`` left."""
    assert outputs(work) == outputs(reference)
    assert [name for name, _, _ in per_image(work)] == [s for i, s in enumerate(data.stems) if i != BAD]
    summary = summary_of(work)
    recorded = [r["name"] for unit in units.values() for r in unit.records]
    earlier = {unit.extra.get("actor") for unit in units.values()}
    assert summary["attempts"] == 2 and summary["resumed_images"] == len(recorded)
    assert summary["cluster"]["resumed_batches"] == len(units)
    now = [part for part in summary["devices"] if part["device_label"] not in earlier]
    assert sum(part["n_images"] for part in now) == N_IMAGES - 1 - len(recorded)  # only the unrecorded
    assert sum(part["NPU_compute_time"]["count"] for part in now) == N_BATCHES - len(units)
    assert summary["NPU_compute_time"]["count"] == N_BATCHES and len(summary["filesinfo"]) == N_IMAGES - 1
    assert not (work / "result_bs2.journal").exists()  # complete: the record is gone
    return summary


# ---- the record, without Ray -------------------------------------------------------------------

def unit(batch, names, actor, process, bad=()):
    """An actor's row for ``batch``: ``names`` scored (each with its mask), ``bad`` unreadable."""
    records = [{"name": name, "iou": 0.1 * (batch + 1) + 0.01 * slot, "dice": 0.2 + 0.01 * batch}
               for slot, name in enumerate(names)]
    masks = {name: pack_mask(np.arange(64).reshape(8, 8) % (3 + slot) == 0) for slot, name in enumerate(names)}
    return batch, {"records": records, "masks": masks, "bad": [[name, "OSError: truncated"] for name in bad],
                   "actor": actor, "ms": [1.0 + batch, 0.1, 0.2 * batch], **process}


def rows(*units):
    return {"batch": np.array([batch for batch, _ in units]), "unit": np.array([json.dumps(one) for _, one in units])}


def test_the_record_replays_the_batches_out_of_order(tmp_path):
    pairs = [(f"img{i}", f"/d/train/img{i}.jpg", f"/d/train_masks/img{i}_mask.gif") for i in range(1, 6)]
    plan = plan_batches(pairs, 2)  # [img1 img2] [img3 img4] [img5]
    key = {"model": "m", "options": {"batchsize": 2}}
    process = {"pid": 11, "node_id": "n1", "restarted": False, "meta": {"backend": "onnxruntime", "precision": "fp32"}}
    with Journal(tmp_path / "r.journal", key) as journal:
        recorder = Recorder(journal, plan)
        recorder.add(rows(unit(2, ["img5"], "x", process)))
        recorder.add(rows(unit(0, ["img1"], "y", dict(process, pid=12, restarted=True), bad=["img2"])))
        # batch 1 never came back: not recorded
    first = recorder.tally
    units = scan((tmp_path / "r.journal").read_bytes()).units
    assert list(units) == [2, 0] and units[0].extra["bad"] == [["img2", "OSError: truncated"]]

    with Journal(tmp_path / "r.journal", key) as journal:
        recorder = Recorder(journal, plan)
        again = recorder.tally
        assert again.scored == 2 and [row["batch"] for row in recorder.pending()] == [1]
        assert journal.attempts == 2
    assert list(again.state) == list(first.state) == [1, 2, 0, 0, 1] and again.why == first.why == {1: "OSError: truncated"}
    assert np.array_equal(again.iou, first.iou) and np.array_equal(again.dice, first.dice) and again.iou[4] == 0.1 * 3
    assert again.extremes.kept == first.extremes.kept and set(again.extremes.kept) == {"img1", "img5"}
    parts = actor_summaries(again, {"batchsize": 2})  # each actor keeps its recorded batches and times
    assert [(p["device_label"], p["pids"], p["restarts"], p["node_ids"], p["backend"]) for p in parts] == [
        ("x", [11], 0, ["n1"], "onnxruntime"), ("y", [12], 1, ["n1"], "onnxruntime")]
    assert [p["npu_compute_time_list"] for p in parts] == [[3.0], [1.0]] and [len(p["filesinfo"]) for p in parts] == [1, 1]
    assert [e["infiles"] for _, e in again.filesinfo().items()] == [["/d/train/img1.jpg"], ["/d/train/img5.jpg"]]


def test_a_record_of_another_plan_is_set_aside(tmp_path, caplog):
    pairs = [(f"img{i}", f"/d/train/img{i}.jpg", f"/d/train_masks/img{i}_mask.gif") for i in range(1, 5)]
    plan, key = plan_batches(pairs, 2), {"model": "m"}
    for case, span in (("images", [0, 2]), ("span", [1, 3])):
        with Journal(tmp_path / f"{case}.journal", key) as journal:
            journal.append(0, [{"name": "img9", "iou": 0.5, "dice": 0.5}], span=span, actor="x", pid=1, ms=[1, 0, 0],
                           meta={"backend": "onnxruntime"})
        with Journal(tmp_path / f"{case}.journal", key) as journal:
            recorder = Recorder(journal, plan)
            assert recorder.tally.scored == 0 and len(recorder.pending()) == 2
        assert (tmp_path / f"{case}.journal.damaged").is_file()
    assert "unit 0 holds other images than this run's" in caplog.text
    assert "unit 0 is no batch of this run's plan" in caplog.text


# ---- the driver killed half way ------------------------------------------------------------------

def test_the_driver_killed_at_half_then_the_same_command(model, data, reference):
    """kill -9 of the driver's process group (its local Ray too) once half the batches are recorded;
    the same command then scores only the others. What the runs leave outside the work folder:
    nothing. The local Ray keeps its files in WORK/.ray (no /tmp/ray, no token in ~/.ray), the second
    run starts its own Ray whatever stale ``ray_current_cluster`` files say (in WORK/.ray, beside the
    killed Ray's session, and in TMPDIR/ray), and no Ray process is left behind."""
    root = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray's sockets fit under WORK/.ray
    home, tmp, work = root / "home", root / "tmp", root / "work"
    (tmp / "ray").mkdir(parents=True)
    (tmp / "ray" / "ray_current_cluster").write_text(STALE)  # Ray's default folder (TMPDIR/ray)
    home.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(HOME=str(home), TMPDIR=str(tmp), UNET_INFER_QUIET="1")
    argv, ray_dir = cluster_argv(model, data, work), work / local.RAY_DIR
    record = work / "result_bs2.journal"
    try:
        proc = start(argv, {**env, pipeline.SLOW_ENV: "0.4"})
        try:
            wait_for_units(record, N_BATCHES // 2, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            status, _ = ended(proc)
            kill_by_folder(ray_dir)
        assert status == -signal.SIGKILL
        units = scan(record.read_bytes()).units
        assert N_BATCHES // 2 <= len(units) < N_BATCHES
        (ray_dir / "ray_current_cluster").write_text(STALE)  # as a killed `ray start` leaves it

        status, out = ended(start(argv, env))
        assert status == 2 and out.strip().splitlines()[-1].startswith("error: 1 unreadable image(s)"), out[-3000:]
        summary = check_resumed(work, reference, data, units)
        assert summary["cluster"]["lost_nodes"] == [] and summary["cluster"]["rounds"][0]["actors"] == 2
        assert f"local Ray: its files in {ray_dir}; this run's logs: {ray_dir}/session_" in out
        assert len(list(ray_dir.glob("session_2*"))) == 2  # one per run
        assert tree(home) == [] and tree(tmp) == ["ray", "ray/ray_current_cluster"]  # nothing of Ray's there
        deadline = time.monotonic() + 20  # the run stopped its Ray: no process of it is left
        while processes_naming(str(ray_dir)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert processes_naming(str(ray_dir)) == []
    finally:
        kill_by_folder(ray_dir)
        subprocess.run(["rm", "-rf", str(root)], check=False)
