"""The Ray Data pipeline (cluster=ray) and the runner's --device 0,1: the same per-image IoU as the
single-process stream, every image exactly once when an actor is killed half way, a padded last
batch, the merged summary; and the pure parts (batch plan, collection, shards, merge) directly.

One local Ray, started as the cluster command starts its own (``pipeline.connect``), serves the
module: the driver joins it with ``address=``; none of its processes listens beyond the loopback.
The one driver run is the expensive part; the tests that read it share it.
"""

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from test_footprint import processes_naming
from tiny_unet import varied_unet
from unet_infer import summary as summ
from unet_infer.bench.devices import shard_bounds
from unet_infer.bench.runner import main as bench_main
from unet_infer.cli import UserError
from unet_infer.cluster import actor_summaries, pipeline, rounds
from unet_infer.cluster.collect import Recorder, plan_batches
from unet_infer.data import load_image, pair_carvana
from unet_infer.journal import Journal, pack_mask, scan, unpack_mask
from unet_infer.model import UNet
from unet_infer.results import read_mask_png
from unet_infer.sample import generate

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "scripts" / "run_all.sh"
SIZE = 32
BS = 2
KILLED_BATCH = 1  # of 3: batches 0 and 2 are scored by whichever actor, batch 1 by a replacement


@pytest.fixture(scope="module")
def ray_address():
    """One new local Ray for the module, started by the cluster command's own ``pipeline.connect``
    (its files in a folder of its own, short enough for its sockets, removed after; its token and
    its loopback setting in os.environ, which the driver inherits); its address, for the driver to join."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp" if os.path.isdir("/tmp") else None)
    stop = pipeline.connect(None, quiet=True, temp_dir=temp)
    yield ray.get_runtime_context().gcs_address
    stop()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """5 generated images (3 batches of 2, the last padded) and a width-4 UNet whose IoUs vary."""
    root = tmp_path_factory.mktemp("cluster")
    generate(root / "data", cars=1, seed=5, views=5, width=160, height=107, workers=1)
    model = varied_unet()
    images = np.stack([load_image(image, SIZE) for _, image, _ in pair_carvana(root / "data")])
    with torch.inference_mode():
        model.outc.conv.bias -= float(model(torch.from_numpy(images)).median())
    torch.save(model.state_dict(), root / "unet.pth")
    return root


def run_driver(tiny, *args, env=None, wait=True):
    env = {**os.environ, "PYTHON": sys.executable, "UNET_INFER_QUIET": "1", **(env or {})}
    argv = ["bash", str(DRIVER), f"bs={BS}", f"data={tiny / 'data'}", f"weights={tiny / 'unet.pth'}",
            f"workdir={tiny / 'work'}", f"size={SIZE}", "quiet=1", "loop=0", "backend=onnxruntime", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return finish(proc) if wait else proc


def finish(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    return out, err


@pytest.fixture(scope="module")
def stream_started(tiny):
    """The plain ``stream=1`` run (one process), started first: it builds the model while Ray starts."""
    return run_driver(tiny, "stream=1", wait=False)


@pytest.fixture(scope="module")
def driver_run(tiny, stream_started, ray_address):
    """``stream=1``'s results kept aside, then ``cluster=ray actors=2`` in the same work folder, on the
    module's Ray, one actor killed at batch 1. Returns (work folder, stream results, flag, cluster stdout,
    cluster stderr)."""
    finish(stream_started)
    work, single, flag = tiny / "work", tiny / "single", tiny / "killed.flag"
    single.mkdir()
    for path in (work / f"result_bs{BS}.txt", work / f"result_bs{BS}.json", work / "result" / f"bs{BS}_masks"):
        path.rename(single / path.name)
    out, err = run_driver(tiny, "cluster=ray", "actors=2", f"address={ray_address}",
                     env={pipeline.CRASH_ENV: f"{flag}:{KILLED_BATCH}"})
    return work, single, flag, out, err


def per_image(path):
    return [(r["name"], r["iou"], r["dice"]) for r in json.loads(Path(path).read_text())["per_image"]]


def test_cluster_gives_the_single_process_iou_image_for_image(driver_run):
    work, single, _, out, _ = driver_run
    assert per_image(work / f"result_bs{BS}.json") == per_image(single / f"result_bs{BS}.json")
    assert (work / f"result_bs{BS}.txt").read_text() == (single / f"result_bs{BS}.txt").read_text()
    for png in (single / f"bs{BS}_masks").iterdir():  # the report's worst and best masks, too
        assert np.array_equal(read_mask_png(png), read_mask_png(work / "result" / f"bs{BS}_masks" / png.name))
    assert (work / "report" / "summary.md").is_file()
    assert "[run_all] compile_onnxruntime_fp32_bs2: complete, skipped" in out  # the stages before it are shared


def test_a_killed_actor_is_replaced_and_every_image_is_scored_once(tiny, driver_run):
    work, _, flag, _, _ = driver_run
    killed = int(flag.read_text())  # the actor's process wrote its pid, then killed itself
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)
    summary = summ.read_summary(work / "result" / f"bs{BS}_summary.json")
    assert summary["cluster"]["restarts"] == 1  # Ray replaced it, and the replacement scored its batch
    names = [name for name, _, _ in per_image(work / f"result_bs{BS}.json")]
    planned = [stem for stem, _, _ in pair_carvana(tiny / "data")]
    assert names == planned  # each once, none missing
    infiles = [entry["infiles"][0] for entry in summary["filesinfo"].values()]
    assert sorted(infiles) == sorted(set(infiles)) and len(infiles) == len(planned)


def test_the_padded_last_batch_is_scored_and_the_summary_merges_the_actors(driver_run):
    work, _, _, out, err = driver_run
    summary = summ.read_summary(work / "result" / f"bs{BS}_summary.json")
    parts = summ.device_summaries(summary)
    assert summary["mode"] == "cluster" and summary["batchsize"] == BS
    assert summary["NPU_compute_time"]["count"] == 3 == sum(p["NPU_compute_time"]["count"] for p in parts)
    assert sum(p["n_images"] for p in parts) == 5 == summ.image_count(summary)
    assert summ.summary_throughput(summary) == pytest.approx(sum(summ.throughput(p) for p in parts))
    assert summ.wall_throughput(summary) == pytest.approx(5 / summ.wall_s(summary))
    assert "[INFO] summary throughput:" in out and "wall-clock throughput: 5 images" in out
    assert "(2 actors" in out and "device(s)" not in out
    # quiet=1 (the driver's): none of Ray's own lines, no colour codes on a pipe
    for noise in ("core_worker.cc", "\x1b[", "Deprecat", "RAY_BACKEND_LOG_LEVEL", "Progress bars"):
        assert noise not in out + err, (noise, err)


def listening(pids):
    """``[(address, port)]`` of the TCP sockets that the processes ``pids`` listen on (/proc/net/tcp, tcp6)."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue  # a process that ended
        inodes.update(link[len("socket:["):-1] for link in links if link.startswith("socket:["))
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                hexaddr, port = fields[1].split(":")
                raw = b"".join(bytes.fromhex(hexaddr[i:i + 8])[::-1] for i in range(0, len(hexaddr), 8))
                found.append((ipaddress.ip_address(raw), int(port, 16)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the sockets in /proc")
def test_the_local_ray_listens_on_the_loopback_only(ray_address):
    found = listening([os.getpid(), *processes_naming(ray.get_runtime_context().get_temp_dir())])
    assert int(ray_address.rpartition(":")[2]) in [port for _, port in found]  # the GCS's own, among them
    outside = [(str(ip), port) for ip, port in found
               if not (ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped and ip.ipv4_mapped.is_loopback))]
    assert outside == [], outside


# ---- the pure parts --------------------------------------------------------------------------

def unit(batch, name, iou=0.5, actor="a", why=""):
    """An actor's row for a batch of the one image ``name``: scored, or unreadable (``why``)."""
    if why:
        return batch, {"records": [], "masks": {}, "bad": [[name, why]]}
    return batch, {"records": [{"name": name, "iou": iou, "dice": iou}], "masks": {}, "bad": [], "actor": actor,
                   "ms": [1.0, 0.1, 0.2], "pid": 7, "restarted": False, "node_id": "n1",
                   "meta": {"backend": "onnxruntime"}}


def recorder_of(folder, names):
    """A recorder of the plan of ``names`` (a batch each), its record in ``folder``."""
    plan = plan_batches([(name, f"/d/train/{name}.jpg", f"/d/train_masks/{name}_mask.gif") for name in names], 1)
    folder.mkdir(exist_ok=True)
    return Recorder(Journal(folder / "r.journal", {"k": 1}), plan)


def collect(recorder, *units):
    return recorder.add({"batch": np.array([batch for batch, _ in units]),
                         "unit": np.array([json.dumps(one) for _, one in units])})


def test_collection_keeps_each_image_once_and_names_the_missing(tmp_path):
    recorder = recorder_of(tmp_path, ["img1", "img2", "img3"])
    assert collect(recorder, unit(0, "img1")) == 1
    assert collect(recorder, unit(0, "img1", actor="b")) == 0  # a retried batch's second unit
    collect(recorder, unit(1, "img2", why="OSError: truncated"))
    assert recorder.duplicates == 1 and list(recorder.tally.names()) == ["img1"]
    assert recorder.tally.missing() == ["/d/train/img3.jpg"]
    collect(recorder, unit(2, "img3"))
    assert recorder.tally.missing() == [] and recorder.journal.units == {0, 1, 2}
    with pytest.raises(UserError, match="img1 was scored twice with different IoUs"):
        collect(recorder, unit(0, "img1", iou=0.25))
    with pytest.raises(UserError, match="an actor returned img9 as batch 2, not the images of this run's batch"):
        collect(recorder, unit(2, "img9"))
    parts = actor_summaries(recorder.tally, {"batchsize": 2})
    assert [p["device_label"] for p in parts] == ["a"] and parts[0]["pids"] == [7]
    assert parts[0]["NPU_compute_time"]["count"] == 2 and parts[0]["backend"] == "onnxruntime"
    units = scan(recorder.journal.path.read_bytes()).units
    assert "meta" in units[0].extra and "meta" not in units[2].extra  # the actor's description: once
    recorder.journal.close()


def test_the_closing_line_counts_the_actors_the_run_started(tmp_path):
    """Two actors, one of them given every batch: "2 actors, batches on 1 of them", not "1 device(s)"."""
    from unet_infer.cluster import closing_lines
    from unet_infer.summary import merge_summaries

    def wall_line(actors, *units):
        recorder = recorder_of(tmp_path / str(len(list(tmp_path.iterdir()))),
                               [one["records"][0]["name"] for _, one in units])
        collect(recorder, *units)
        recorder.journal.close()
        summary = merge_summaries(actor_summaries(recorder.tally, {"batchsize": 1}), {"batchsize": 1},
                                  [0.1] * 3, [0.2] * 3, 1.5, 1, filesinfo=recorder.tally.filesinfo(),
                                  extra={"cluster": {"actors": actors}, "resumed_images": 0})
        return [line for line in closing_lines(summary) if "wall-clock" in line]

    three = [unit(k, name, actor="a") for k, name in enumerate(["img1", "img2", "img3"])]
    assert wall_line(2, *three) == ["[INFO] wall-clock throughput: 3 images / 1.500 s = 2.000 images/s "
                                    "(2 actors, batches on 1 of them, whole run)"]
    assert wall_line(1, *three)[0].endswith("(1 actor, whole run)")
    assert wall_line(2, unit(0, "img1", actor="a"), unit(1, "img2", actor="b"))[0].endswith(
        " images/s (2 actors, whole run)")
    assert wall_line(1, unit(0, "img1", actor="a"))[0].startswith(
        "[INFO] wall-clock throughput: 1 image / 1.500 s = 0.667 images/s (1 actor, ")


def test_quiet_keeps_rays_own_lines_off_stderr_and_a_pipe_gets_no_colour(monkeypatch, capfd):
    """In process, no Ray started: what connect sets before ray.init, and the quiet start itself."""
    import logging
    from ray.data import DataContext
    monkeypatch.delenv("RAY_BACKEND_LOG_LEVEL", raising=False)
    with pipeline.quiet_init(True):
        os.write(2, b"[... I 1 1] logging.cc:303: Set ray log level from environment variable\n")
        assert os.environ["RAY_BACKEND_LOG_LEVEL"] == "fatal"  # what the processes ray.init starts read
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n" and "RAY_BACKEND_LOG_LEVEL" not in os.environ
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "debug")
    with pipeline.quiet_init(True):
        assert os.environ["RAY_BACKEND_LOG_LEVEL"] == "debug"  # the user's own setting is kept
    with pipeline.quiet_init(False):
        os.write(2, b"not quiet\n")
    assert capfd.readouterr().err == "not quiet\n"

    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    data_log, context = logging.getLogger("ray.data"), DataContext.get_current()
    level, bars = data_log.level, context.enable_progress_bars
    try:  # an address where nothing answers: connect stops before ray.init, its settings made
        with pytest.raises(UserError, match="cannot join the Ray cluster at 127.0.0.1:1: nothing answers there"):
            pipeline.connect("127.0.0.1:1", quiet=True)
        assert os.environ["RAY_COLOR_PREFIX"] == "0"  # stderr is not a terminal here
        assert data_log.level == logging.ERROR and not context.enable_progress_bars
    finally:
        data_log.setLevel(level)
        context.enable_progress_bars = bars


def test_plan_masks_and_errors():
    pairs = [(f"img{i}", f"/d/img{i}.jpg", f"/d/img{i}_mask.gif") for i in range(1, 6)]
    plan = plan_batches(pairs, 2)
    assert [len(r["images"]) for r in plan] == [2, 2, 1] and plan[2]["images"] == ["/d/img5.jpg"]
    mask = np.random.default_rng(0).random((SIZE, SIZE)) > 0.5
    assert np.array_equal(unpack_mask(pack_mask(mask)), mask)
    wrapped = RuntimeError("ray wrapper")
    wrapped.__cause__ = UserError("m.onnx: the model's batch size is fixed at 1")
    assert str(rounds.failure(wrapped)) == "m.onnx: the model's batch size is fixed at 1"
    actor_died = RuntimeError("The actor died because of an error raised in its creation task\n  File ...\n"
                              "unet_infer.cli.UserError: m.onnx: --precision int8, but the model computes in fp32")
    assert str(rounds.failure(actor_died)) == "m.onnx: --precision int8, but the model computes in fp32"
    died = RuntimeError("ray wrapper")
    died.__cause__ = ray.exceptions.WorkerCrashedError()
    lost = [{"node_id": "5d31a7c2ffff", "address": "192.0.2.2"}]
    assert str(rounds.failure(died, "L", lost, "3 of 12 batches are recorded")).startswith(
        "the Ray pipeline failed after 3 actor restarts at most (lost 1 node(s) (192.0.2.2 5d31a7c2); "
        "WorkerCrashedError: ")
    assert str(rounds.failure(died, "L", lost, "3 of 12 batches are recorded")).endswith(
        "; 3 of 12 batches are recorded; see the Ray logs in L (on each node of a cluster)")
    bug = RuntimeError("a bug")
    assert rounds.failure(bug) is bug  # raised as it is


def test_the_pool_is_sized_to_the_nodes():
    def request(**given):
        return argparse.Namespace(**{"gpus_per_actor": 0, "actors": None, "threads": None, "workers": None, **given})
    size_pool = rounds.size_pool
    assert size_pool(request(actors=2), [(2, 0)]) == (2, 1, 1)  # 2 x 1 thread, decoding beside them
    assert size_pool(request(), [(2, 0)]) == (1, 2, 1)
    assert size_pool(request(actors=3), [(16, 0), (16, 0)]) == (3, 8, 8)  # 2 + 1 actors per node
    assert size_pool(request(gpus_per_actor=1), [(16, 1), (16, 1)]) == (2, 1, 30)  # one per GPU
    with pytest.raises(UserError, match=r"3 actor\(s\) of 10 CPU\(s\) each do not fit .* lower --actors"):
        size_pool(request(actors=3, threads=10), [(16, 0), (16, 0)])
    with pytest.raises(UserError, match="--gpus-per-actor 1: the Ray cluster has 0 GPU"):
        size_pool(request(gpus_per_actor=1), [(2, 0)])


def test_shards_are_contiguous_at_whole_batches():
    assert shard_bounds(5, 2, 2) == [(0, 4), (4, 5)]
    assert shard_bounds(8, 2, 2) == [(0, 4), (4, 8)]
    assert shard_bounds(3, 4, 1) == [(0, 1), (1, 2), (2, 2), (2, 3)]
    assert shard_bounds(16, 3, 4) == [(0, 4), (4, 12), (12, 16)]


# ---- the runner's --device 0,1 -------------------------------------------------------------

@pytest.fixture(scope="module")
def bins(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prep") / "prep_bin"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in (1, 2, 3, 4, 10):
        rng.random((3, SIZE, SIZE), dtype=np.float32).tofile(folder / f"img{i}.bin")
    model = UNet(width=4).eval()
    model.load_state_dict(torch.load(tiny / "unet.pth"))
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(tiny / "dynamic.onnx"), dynamo=False, opset_version=11,
                      input_names=["actual_input_1"], output_names=["output1"],
                      dynamic_axes={"actual_input_1": {0: "-1"}, "output1": {0: "-1"}})
    return folder, tiny / "dynamic.onnx"


def test_two_devices_on_the_cpu_are_two_shards_in_one_folder(bins, tmp_path, capsys, caplog):
    folder, model = bins
    common = ["--model", str(model), "--input", str(folder), "--batchsize", "2", "--output", str(tmp_path),
              "--threads", "2", "--quiet"]
    bench_main([*common, "--output_dirname", "one"])
    capsys.readouterr()
    caplog.set_level("INFO")
    bench_main([*common, "--output_dirname", "two", "--device", "0,1"])
    out = capsys.readouterr().out
    assert "--device 0,1 on the CPU: 2 shards of the inputs, 1 thread(s) each" in caplog.text
    one, two = tmp_path / "one", tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    for path in one.iterdir():
        assert path.read_bytes() == (two / path.name).read_bytes()
    merged = summ.read_summary(tmp_path / "two_summary.json")
    parts = summ.device_summaries(merged)
    assert [p["n_images"] for p in parts] == [4, 1] and [p["args"]["threads"] for p in parts] == [1, 1]
    assert [Path(e["infiles"][0]).name for e in merged["filesinfo"].values()] == [
        "img1.bin", "img2.bin", "img3.bin", "img4.bin", "img10.bin"]
    assert all(len(e["outfiles"]) == 1 for e in merged["filesinfo"].values())
    assert (tmp_path / "two_device0_summary.json").is_file() and (tmp_path / "two_device1_summary.json").is_file()
    assert out.count("Performance Summary") == 2 and f"[INFO] summary throughput:{merged['summary_throughput']}" in out
    assert merged["summary_throughput"] == pytest.approx(sum(summ.throughput(p) for p in parts))


def test_pure_inference_on_several_cpu_devices_is_refused(bins):
    with pytest.raises(UserError, match="several devices mean shards of the --input files"):
        bench_main(["--model", str(bins[1]), "--device", "0,1", "--quiet"])


def test_the_cluster_cli_checks_before_any_ray_work(tiny, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unet_infer.cluster", "--model", str(tmp_path / "none.onnx"),
                           "--data", str(tiny / "data"), "--batchsize", "2", "--result", str(tmp_path / "r.txt")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("none.onnx: model not found")


def test_cluster_help_and_the_driver_options(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unet_infer.cluster", "--help"], capture_output=True, text=True,
                          timeout=60)
    text = " ".join(proc.stdout.replace("\\\n", " ").split())
    assert proc.returncode == 0 and "python3 -m unet_infer.cluster --model UNet_bs8.onnx --data ./carvana" in text
    assert "ray start --head" in text and "(default: 0, the actors run on CPUs)" in text
    for args, message in ((["actors=2"], "address=, actors= and gpus_per_actor= go with cluster=ray"),
                          (["cluster=spark"], "cluster must be ray (or left out), got 'spark'"),
                          (["cluster=ray", "labels=none"], "cluster=ray scores as it goes: it needs the labels"),
                          (["cluster=ray", "actors=0"], "actors must be a positive whole number, got '0'"),
                          (["cluster=ray", "gpus_per_actor=x"], "gpus_per_actor must be a number of GPUs")):
        proc = subprocess.run(["bash", str(DRIVER), "bs=2", f"workdir={tmp_path}", *args], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and f"error: {message}" in proc.stderr, (args, proc.stderr)
