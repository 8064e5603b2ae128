"""The stream resumes at batch granularity: killed (kill -9 of its process group) or interrupted,
the same command scores only the batches not recorded and writes the same files, byte for byte."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import _make_carvana
from tiny_unet import tiny_onnx
from unet_infer import stream
from unet_infer.cli import run_cli
from unet_infer.data import pair_carvana
from unet_infer.journal import Journal, pack_mask, scan, unpack_mask
from unet_infer.results import select_extremes
from unet_infer.scoring import Extremes, Scorer, resume
from unet_infer.stream import in_order, main

REPO = Path(__file__).resolve().parents[1]
SIZE, N_IMAGES, BATCH = 32, 40, 2
BAD = (5, 31)  # unreadable images: one in the recorded half, one in the rest
N_UNITS = (N_IMAGES - len(BAD)) // BATCH
# the same command, each batch slowed down so that the test can kill it half way
SLOW = ("import sys, time; from unet_infer import cli, scoring, stream; score = scoring.Scorer.__call__; "
        "scoring.Scorer.__call__ = lambda self, *a: (time.sleep(0.2), score(self, *a))[1]; "
        "sys.exit(cli.run_cli(stream.main))")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    data = _make_carvana(tmp_path_factory.mktemp("resume_data") / "carvana", n=N_IMAGES)
    data.stems = [stem for stem, _, _ in pair_carvana(data.root)]  # the run's order (natural)
    for i in BAD:
        data.image(data.stems[i]).write_bytes(b"not a jpeg")
    return data


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("resume_model"), size=SIZE)


def argv(model, data, work, batchsize=BATCH):
    return ["--model", str(model), "--data", str(data.root), "--batchsize", str(batchsize), "--size", str(SIZE),
            "--threads", "1", "--workers", "1", "--quiet", "--result", str(work / "result_bs2.txt"),
            "--summary", str(work / "result" / "bs2_summary.json")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model, data):
    """An uninterrupted run (exit 2: it names the unreadable images after writing the results)."""
    work = tmp_path_factory.mktemp("resume_reference")
    assert run_cli(main, argv(model, data, work)) == 2
    return work


def outputs(work):
    """``{relative path: bytes}`` of what a run leaves that must not depend on its stops."""
    files = [work / "result_bs2.txt", work / "result_bs2.json", *sorted((work / "result" / "bs2_masks").iterdir())]
    return {str(p.relative_to(work)): p.read_bytes() for p in files}


class Watch:
    """What the next in-process run decodes (the tasks handed to the decoder) and scores (batches)."""

    def __init__(self, monkeypatch, stop_after=None):
        self.decoded, self.scored, self.stop_after = [], 0, stop_after
        prefetcher, score = stream.Prefetcher, Scorer.__call__
        watch = self

        def counting_prefetcher(func, tasks, *args, **kwargs):
            tasks = list(tasks)
            watch.decoded += [Path(t[0]).stem for t in tasks]
            return prefetcher(func, tasks, *args, **kwargs)

        def counting_score(scorer, items, outputs):
            if watch.scored == watch.stop_after:
                raise KeyboardInterrupt  # Ctrl-C while this batch runs
            watch.scored += 1
            return score(scorer, items, outputs)

        monkeypatch.setattr(stream, "Prefetcher", counting_prefetcher)
        monkeypatch.setattr(Scorer, "__call__", counting_score)


def test_the_reference_is_worth_comparing(reference, data):
    result = json.loads((reference / "result_bs2.json").read_text())
    ious = [r["iou"] for r in result["per_image"]]
    assert result["n_images"] == N_IMAGES - len(BAD) and len(set(ious)) > N_IMAGES // 2
    assert len(list((reference / "result" / "bs2_masks").iterdir())) == 8
    summary = json.loads((reference / "result" / "bs2_summary.json").read_text())
    assert summary["attempts"] == 1 and summary["resumed_images"] == 0
    assert not (reference / "result_bs2.journal").exists()  # a finished run removes its record


def test_kill_9_of_the_process_group_then_the_same_command(reference, model, data, tmp_path, monkeypatch,
                                                           capsys):
    record = tmp_path / "result_bs2.journal"
    proc = subprocess.Popen([sys.executable, "-c", SLOW, *argv(model, data, tmp_path)], cwd=REPO,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if record.is_file() and record.read_bytes().count(b'{"unit":') >= N_UNITS // 2:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its decoding processes
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    units = scan(record.read_bytes()).units
    assert N_UNITS // 2 <= len(units) < N_UNITS and sorted(units) == list(range(len(units)))
    recorded = [r["name"] for unit in units.values() for r in unit.records]
    end = units[len(units) - 1].extra["span"][1]

    watch = Watch(monkeypatch)
    assert run_cli(main, argv(model, data, tmp_path)) == 2
    bad = ", ".join(str(data.image(data.stems[i])) for i in BAD)
    assert f"2 unreadable image(s), left out of the scores: {bad}" in capsys.readouterr().err
    assert watch.decoded == data.stems[end:]  # the recorded batches' images are not even decoded
    assert watch.scored == N_UNITS - len(units) and not set(recorded) & set(watch.decoded)
    assert outputs(tmp_path) == outputs(reference)
    summary = json.loads((tmp_path / "result" / "bs2_summary.json").read_text())
    assert summary["attempts"] == 2 and summary["resumed_images"] == len(recorded)
    assert summary["NPU_compute_time"]["count"] == N_UNITS and len(summary["filesinfo"]) == N_IMAGES - len(BAD)
    assert not record.exists() and not list(tmp_path.glob("*.journal*"))


def test_ctrl_c_then_resume_and_other_options_start_afresh(reference, model, data, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    Watch(monkeypatch, stop_after=3)
    assert run_cli(main, argv(model, data, tmp_path)) == 130
    units = scan((tmp_path / "result_bs2.journal").read_bytes()).units
    assert len(units) == 3 and not (tmp_path / "result_bs2.txt").exists()
    monkeypatch.undo()

    watch = Watch(monkeypatch, stop_after=2)  # stopped again: a third attempt finishes
    assert run_cli(main, argv(model, data, tmp_path)) == 130
    assert len(scan((tmp_path / "result_bs2.journal").read_bytes()).units) == 5
    monkeypatch.undo()
    watch = Watch(monkeypatch)
    assert run_cli(main, argv(model, data, tmp_path)) == 2
    assert watch.scored == N_UNITS - 5 and outputs(tmp_path) == outputs(reference)
    assert json.loads((tmp_path / "result" / "bs2_summary.json").read_text())["attempts"] == 3

    Watch(monkeypatch, stop_after=2)
    assert run_cli(main, argv(model, data, tmp_path)) == 130
    monkeypatch.undo()
    caplog.clear()
    watch = Watch(monkeypatch)
    assert run_cli(main, argv(model, data, tmp_path, batchsize=4)) == 2  # another batch size: not reused
    assert watch.scored == 10 and len(watch.decoded) == N_IMAGES
    assert "a record of another run (another options)" in caplog.text
    assert (tmp_path / "result_bs2.journal.stale").is_file()
    summary = json.loads((tmp_path / "result" / "bs2_summary.json").read_text())
    assert summary["attempts"] == 1 and summary["resumed_images"] == 0


def test_a_record_that_is_not_the_runs_first_batches_is_set_aside(tmp_path, caplog):
    paths = [f"d/train/img{i}.jpg" for i in range(6)]
    scored = [{"name": f"img{i}", "iou": 0.5 + i / 10, "dice": 0.7} for i in range(6)]
    cases = {"gap": [(0, 0, 2), (2, 2, 4)], "skips": [(0, 0, 2), (1, 3, 5)],  # (unit, span, skipped, shift)
             "names": [(0, 0, 2), (1, 2, 4, [], 1)], "fits": [(0, 0, 3, [1]), (1, 3, 5)]}
    for case, units in cases.items():
        path = tmp_path / f"{case}.journal"
        with Journal(path, {"k": 1}) as journal:
            for uid, first, end, skipped, shift in (unit + ([], 0)[len(unit) - 3:] for unit in units):
                records = [scored[p + shift] for p in range(first, end) if p not in skipped]
                masks = {r["name"]: pack_mask(np.eye(2, dtype=bool)) for r in records}
                journal.append(uid, records, masks, span=[first, end], bad=[[f"img{p}", ""] for p in skipped],
                               ms=[1.0, 0.0, 0.0])
        with Journal(path, {"k": 1}) as journal:
            tally = resume(journal, len(paths), paths.__getitem__, in_order)
        if case == "fits":
            assert tally.end == 5 and tally.why == {1: ""} and sorted(tally.parts[""]["times"]) == [0, 1]
            assert list(tally.names()) == ["img0", "img2", "img3", "img4"]
            assert [e for _, e in tally.filesinfo().items()][1] == {"infiles": ["d/train/img2.jpg"], "outfiles": []}
        else:
            assert tally.units == 0 and not tally.state.any() and (tmp_path / f"{case}.journal.damaged").is_file()
    assert "gap.journal: unit 2 is not the stream's next batch" in caplog.text
    assert "skips.journal: unit 1 is not the stream's next batch" in caplog.text
    assert "names.journal: unit 1 holds other images than this run's" in caplog.text


@pytest.mark.parametrize("seed", range(6))
def test_the_extremes_replayed_from_the_stored_masks_are_the_uninterrupted_ones(seed):
    """Stop after any batch: the masks that entered each attempt's own scorer with each batch (a new
    attempt's scorer starts empty), replayed in order, give the same final worst and best (with
    their masks) as the uninterrupted run, ties included."""
    rng = np.random.default_rng(seed)
    total, batch = int(rng.integers(5, 40)), int(rng.integers(1, 5))
    ious = rng.choice([0.2, 0.5, 0.5, 0.9, 1.0], total) if seed % 2 else rng.random(total)
    names = [f"img{i}" for i in rng.permutation(total)]
    masks = [pack_mask(rng.random((4, 4)) > 0.5) for _ in range(total)]
    batches = [range(k, min(k + batch, total)) for k in range(0, total, batch)]

    def scored(scorer, b):  # what Scorer does: the masks of the batch's images that entered its extremes
        return {names[i]: masks[i] for i in b if scorer.offer(names[i], float(ious[i]), masks[i])}

    whole = Extremes()
    stored = [scored(whole, b) for b in batches]
    want = whole.masks()
    worst, best = select_extremes([{"name": n, "iou": float(v)} for n, v in zip(names, ious)])
    assert want[0] == [r["name"] for r in worst + best] and set(want[1]) == set(want[0])
    assert sum(map(len, stored)) < total or total <= 12  # only some of the masks are stored
    for stop in range(len(batches) + 1):
        resumed, scorer = Extremes(), Extremes()
        for b, kept in zip(batches, stored[:stop] + [scored(scorer, b) for b in batches[stop:]]):
            for i in b:
                resumed.offer(names[i], float(ious[i]), kept.get(names[i]))
        assert resumed.masks() == want


def test_scorer_hands_back_each_batchs_records_and_entered_masks():
    scorer = Scorer(2, 4)
    label = np.ones((4, 4), bool)
    logits = np.stack([np.full((1, 4, 4), 1.0), np.where(np.eye(4, dtype=bool), 1.0, -1.0)[None]]).astype(np.float32)
    records, masks = scorer([("x/a.jpg", label), ("x/b.jpg", label)], [logits])
    assert [r["name"] for r in records] == ["a", "b"] and records[0]["iou"] == 1.0 and records[1]["iou"] == 0.25
    assert set(masks) == {"a", "b"} and np.array_equal(unpack_mask(masks["b"]), np.eye(4, dtype=bool))


def test_stopped_after_the_last_batch_the_same_command_only_writes(reference, model, data, tmp_path, monkeypatch):
    finish = stream.finish

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "result_bs2.txt"))

    monkeypatch.setattr(stream, "finish", full_disk)
    assert run_cli(main, argv(model, data, tmp_path)) == 1
    assert len(scan((tmp_path / "result_bs2.journal").read_bytes()).units) == N_UNITS
    monkeypatch.setattr(stream, "finish", finish)
    watch = Watch(monkeypatch)
    assert run_cli(main, argv(model, data, tmp_path)) == 2
    assert watch.scored == 0 and watch.decoded == [] and outputs(tmp_path) == outputs(reference)
    summary = json.loads((tmp_path / "result" / "bs2_summary.json").read_text())
    assert summary["resumed_images"] == N_IMAGES - len(BAD) and summary["NPU_compute_time"]["count"] == N_UNITS
