"""The ais_bench-compatible runner: batching, outputs, summary, errors, backends."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tiny_unet import varied_unet, skip_without_cpu_fp16
from unet_infer.backends import backend_for_model, get_backend
from unet_infer.backends.base import resolve_batchsize
from unet_infer.bench.files import output_name, plan_batches
from unet_infer.bench.runner import main
from unet_infer.cli import UserError, run_cli
from unet_infer.summary import REQUIRED_KEYS

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
IMAGE_BYTES = 3 * SIZE * SIZE * 4


def export(model, path, dynamic=True, batch=1):
    kwargs = {"dynamic_axes": {"actual_input_1": {0: "-1"}, "output1": {0: "-1"}}} if dynamic else {}
    torch.onnx.export(model, torch.zeros(batch, 3, SIZE, SIZE), str(path), dynamo=False, opset_version=11,
                      input_names=["actual_input_1"], output_names=["output1"], **kwargs)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A width-4 UNet with non-trivial BatchNorm: its state_dict, a dynamic ONNX and a fixed batch-2 ONNX."""
    folder = tmp_path_factory.mktemp("models")
    model = varied_unet(affine=True)
    torch.save(model.state_dict(), folder / "unet.pth")
    export(model, folder / "unet.onnx")
    export(model, folder / "unet_bs2.onnx", dynamic=False, batch=2)
    return folder


@pytest.fixture
def images(tmp_path):
    """Five random preprocessed images, img1..img5 (natural order differs from plain sorting at img10)."""
    folder = tmp_path / "prep_bin"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in (1, 2, 3, 10, 4):
        rng.random((3, SIZE, SIZE), dtype=np.float32).tofile(folder / f"img{i}.bin")
    return folder


def reference(model_path, image_path):
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    image = np.fromfile(image_path, np.float32).reshape(1, 3, SIZE, SIZE)
    return session.run(None, {"actual_input_1": image})[0]


def bench(*argv):
    return main([*map(str, argv), "--quiet"])


def test_outputs_equal_onnxruntime_and_padding_writes_nothing(models, images, tmp_path, capsys):
    bench("--model", models / "unet.onnx", "--input", images, "--output", tmp_path / "result",
          "--output_dirname", "bs2", "--batchsize", 2, "--loop", 2)
    out_dir = tmp_path / "result" / "bs2"
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["img10_0.bin", "img1_0.bin", "img2_0.bin", "img3_0.bin", "img4_0.bin"]
    for stem in ("img1", "img2", "img3", "img4", "img10"):
        got = np.fromfile(out_dir / f"{stem}_0.bin", np.float32)
        want = reference(models / "unet.onnx", images / f"{stem}.bin").reshape(-1)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    summary = json.loads((tmp_path / "result" / "bs2_summary.json").read_text())
    assert set(REQUIRED_KEYS) <= set(summary)
    order = ["img1", "img2", "img3", "img4", "img10"]  # natural order; img10 sits alone in a padded batch
    assert list(summary["filesinfo"]) == ["0", "1", "2", "3", "4"]
    for sample_id, stem in enumerate(order):
        entry = summary["filesinfo"][str(sample_id)]
        assert entry["infiles"] == [str(images / f"{stem}.bin")]
        assert entry["outfiles"] == [str(out_dir / f"{stem}_0.bin")]
    assert summary["NPU_compute_time"]["count"] == 3 * 2  # 3 batches, --loop 2 each, warm-up dropped
    assert summary["H2D_latency"]["count"] == summary["D2H_latency"]["count"] == 3
    assert summary["throughput"] == pytest.approx(2000 / summary["NPU_compute_time"]["mean"])


def test_printed_performance_summary(models, capsys):
    bench("--model", models / "unet.onnx", "--loop", 3, "--batchsize", 2, "--display_all_summary")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[INFO] -----------------Performance Summary------------------"
    assert [line.split(" (ms)")[0] for line in lines[1:4]] == [
        "[INFO] H2D_latency", "[INFO] NPU_compute_time", "[INFO] D2H_latency"]
    assert re.fullmatch(r"\[INFO\] NPU_compute_time \(ms\): min = [\d.e-]+, max = [\d.e-]+, mean = [\d.e-]+, "
                        r"median = [\d.e-]+, percentile\(99%\) = [\d.e-]+", lines[2])
    match = re.fullmatch(r"\[INFO\] throughput 1000\*batchsize\.mean\(2\)/NPU_compute_time\.mean\(([\d.e-]+)\): "
                         r"([\d.e-]+)", lines[4])
    assert match and float(match[2]) == pytest.approx(2000 / float(match[1]))
    assert re.fullmatch(r"\[INFO\] NPU_compute_time percentiles \(ms\): p50 = [\d.]+, p90 = [\d.]+, p95 = [\d.]+, "
                        r"p99 = [\d.]+", lines[5])


def test_pure_mode_without_output_writes_nothing(models, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bench("--model", models / "unet.onnx", "--loop", 2, "--pure_data_type", "random")
    assert list(tmp_path.iterdir()) == []
    assert "throughput 1000*batchsize.mean(1)/" in capsys.readouterr().out


def test_pure_mode_with_output_writes_only_the_summary_in_a_timestamp_folder(models, tmp_path):
    bench("--model", models / "unet.onnx", "--loop", 4, "--output", tmp_path)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert re.fullmatch(r"\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}", folder.name)
    assert list(folder.iterdir()) == []
    summary = json.loads((tmp_path / f"{folder.name}_summary.json").read_text())
    assert summary["filesinfo"] == {} and summary["NPU_compute_time"]["count"] == 4


@pytest.mark.parametrize("outfmt", ["NPY", "TXT"])
def test_outfmt_and_npy_inputs(models, images, tmp_path, outfmt):
    npy_inputs = tmp_path / "npy"
    npy_inputs.mkdir()
    for path in images.iterdir():
        np.save(npy_inputs / f"{path.stem}.npy", np.fromfile(path, np.float32).reshape(3, SIZE, SIZE))
    bench("--model", models / "unet.onnx", "--input", npy_inputs, "--output", tmp_path / "r",
          "--output_dirname", "x", "--outfmt", outfmt, "--batchsize", 3)
    want = reference(models / "unet.onnx", images / "img2.bin")
    path = tmp_path / "r" / "x" / f"img2_0.{outfmt.lower()}"
    if outfmt == "NPY":
        got = np.load(path)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:
        got = np.loadtxt(path)
        assert got.shape == (SIZE, SIZE)
        np.testing.assert_allclose(got, want.reshape(SIZE, SIZE), atol=1e-5)


def test_file_of_another_size_is_named(models, images, tmp_path):
    (images / "img3.bin").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match=rf"img3\.bin: 100 bytes, expected {IMAGE_BYTES} \(1 file\(s\) per batch"):
        bench("--model", models / "unet.onnx", "--input", images)


def test_a_wrong_first_file_is_named_not_the_good_ones_after_it(models, images, tmp_path):
    (images / "img1.bin").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match=rf"img1\.bin: 100 bytes, expected {IMAGE_BYTES} "):
        bench("--model", models / "unet.onnx", "--input", images)


def test_file_size_that_does_not_divide_the_batch(models, tmp_path):
    (tmp_path / "a.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(UserError, match=rf"a\.bin: 1000 bytes, expected {2 * IMAGE_BYTES} bytes"):
        bench("--model", models / "unet.onnx", "--input", tmp_path, "--batchsize", 2)


def test_file_holding_a_whole_batch_is_one_sample(models, images, tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    files = sorted(images.iterdir())
    (folder / "pair.bin").write_bytes(files[0].read_bytes() + files[1].read_bytes())
    bench("--model", models / "unet.onnx", "--input", folder, "--output", tmp_path, "--output_dirname", "x",
          "--batchsize", 2)
    assert (tmp_path / "x" / "pair_0.bin").stat().st_size == 2 * SIZE * SIZE * 4


def test_empty_input_folder(models, tmp_path):
    (tmp_path / "notes.txt").write_text("not an input")
    with pytest.raises(UserError, match="no .bin or .npy files"):
        bench("--model", models / "unet.onnx", "--input", tmp_path)


def test_existing_run_is_refused_and_kept(models, images, tmp_path):
    argv = ["--model", models / "unet.onnx", "--input", images, "--output", tmp_path / "r", "--output_dirname", "a"]
    bench(*argv)
    before = sorted(p.name for p in (tmp_path / "r" / "a").iterdir())
    with pytest.raises(UserError, match="already holds a run; choose another --output_dirname"):
        bench(*argv)
    (tmp_path / "r" / "a_summary.json").unlink()
    with pytest.raises(UserError, match="already holds a run"):
        bench(*argv)
    assert sorted(p.name for p in (tmp_path / "r" / "a").iterdir()) == before


@pytest.mark.parametrize("content", [None, b"this is not a model"])
def test_missing_or_foreign_model(tmp_path, content):
    path = tmp_path / "m.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=re.escape(str(path))):
        bench("--model", path)


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert run_cli(main, ["--model", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {tmp_path / 'm.onnx'}: model not found (")


def test_fixed_batch_model_wins_and_conflicts_are_refused(models, images, tmp_path):
    bench("--model", models / "unet_bs2.onnx", "--input", images, "--output", tmp_path, "--output_dirname", "x")
    summary = json.loads((tmp_path / "x_summary.json").read_text())
    assert len(summary["filesinfo"]) == 5 and summary["NPU_compute_time"]["count"] == 3
    with pytest.raises(UserError, match="fixed at 2; --batchsize 4 conflicts"):
        bench("--model", models / "unet_bs2.onnx", "--batchsize", 4)


def test_several_devices_on_cpu_are_refused(models):
    with pytest.raises(UserError, match="--device 0,1: one run per device needs GPUs"):
        bench("--model", models / "unet.onnx", "--device", "0,1")


def test_dashed_aliases_and_help(models, images, tmp_path, capsys):
    bench("--model", models / "unet.onnx", "--input", images, "--output", tmp_path, "--output-dirname", "d",
          "--warmup-count", 0, "--pure-data-type", "zero")
    assert (tmp_path / "d" / "img1_0.bin").is_file()
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert ("python3 -m unet_infer.bench --model=UNet_bs8.onnx --input=./prep_bin --output=result "
            "--output_dirname=bs8 --batchsize=8") in text
    assert "--loop=100" in text and "(default: 1)" in text


@pytest.mark.parametrize("precision, rtol", [("fp32", 1e-4), ("bf16", 2e-2), ("fp16", 5e-3)])
def test_torch_backend_matches_onnxruntime(models, images, tmp_path, precision, rtol):
    if precision == "fp16":
        skip_without_cpu_fp16()
    bench("--model", models / "unet.pth", "--size", SIZE, "--input", images, "--output", tmp_path,
          "--output_dirname", precision, "--batchsize", 2, "--precision", precision)
    for stem in ("img1", "img10"):
        got = np.fromfile(tmp_path / precision / f"{stem}_0.bin", np.float32)
        want = reference(models / "unet.onnx", images / f"{stem}.bin").reshape(-1)
        assert np.abs(got - want).max() <= rtol * np.abs(want).max()


def test_backend_interface(models):
    backend = get_backend("torch")()
    backend.load(models / "unet.pth", batchsize=3, size=SIZE, threads=1)
    (spec,) = backend.inputs
    assert spec.shape == (3, 3, SIZE, SIZE) and backend.inputs[0].nbytes == 3 * IMAGE_BYTES
    (out,) = backend.infer(np.zeros(spec.shape, spec.dtype))
    assert out.shape == (3, 1, SIZE, SIZE) and out.dtype == np.float32
    assert [backend_for_model(n) for n in ("a.onnx", "b.pth", "c.pt", "d.om")] == [
        "onnxruntime", "torch", "torch", "acl"]
    with pytest.raises(UserError, match="--backend"):
        backend_for_model("model.bin")


def test_acl_backend_without_ais_bench(tmp_path):
    with pytest.raises(UserError, match="ais_bench.*set_env.sh"):
        bench("--model", tmp_path / "UNet_bs8.om", "--loop", 100)


def test_acl_backend_hands_the_ais_bench_flags_over(tmp_path):
    stand_in = tmp_path / "ais_bench"
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text("")
    (stand_in / "__main__.py").write_text(
        "import json, sys\nopen(sys.argv[0] + '.argv', 'w').write(json.dumps(sys.argv[1:]))\nsys.exit(3)\n")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"}
    argv = ["--model=UNet_bs8.om", "--input=./prep_bin", "--output=result", "--output-dirname=bs8",
            "--batchsize=8", "--threads", "4", "--dymBatch", "8"]
    proc = subprocess.run([sys.executable, "-m", "unet_infer.bench", *argv], env=env, cwd=tmp_path)
    assert proc.returncode == 3
    passed = json.loads((stand_in / "__main__.py.argv").read_text())
    assert passed == ["--model=UNet_bs8.om", "--input=./prep_bin", "--output=result", "--output_dirname=bs8",
                      "--batchsize=8", "--dymBatch", "8"]


@given(st.integers(1, 300), st.integers(1, 40))
def test_batch_plan_covers_every_file_once_and_pads_with_the_batch_first(n_files, per_batch):
    batches = plan_batches(n_files, per_batch)
    assert len(batches) == -(-n_files // per_batch)
    real = []
    for index, batch in enumerate(batches):
        assert batch.index == index and len(batch.files) == per_batch
        assert batch.real == min(per_batch, n_files - index * per_batch)
        assert all(f == batch.files[0] for f in batch.files[batch.real:])
        real += batch.files[:batch.real]
    assert real == list(range(n_files))


@given(st.lists(st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True), min_size=1, max_size=20),
       st.integers(0, 3), st.sampled_from(["BIN", "NPY", "TXT"]))
def test_output_names_follow_the_input_stems(stems, k, outfmt):
    paths = [f"in/{stem}.bin" for stem in stems]
    assert [output_name(p, k, outfmt) for p in paths] == [f"{s}_{k}.{outfmt.lower()}" for s in stems]


@pytest.mark.parametrize("second", ["other/img1.bin", "prep_bin/img1.bin"])
def test_inputs_whose_outputs_share_a_name_are_refused_before_any_work(models, images, tmp_path, second):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "img1.bin").write_bytes((images / "img1.bin").read_bytes())
    with pytest.raises(UserError, match=rf"img1\.bin and .*{second}\b would write the same output files"):
        bench("--model", models / "unet.onnx", "--input", f"{images / 'img1.bin'},{tmp_path / second}",
              "--output", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resolve_batchsize():
    assert resolve_batchsize(None, None, "m") == 1
    assert resolve_batchsize(None, 8, "m") == 8
    assert resolve_batchsize(4, None, "m") == resolve_batchsize(4, 4, "m") == 4
    with pytest.raises(UserError, match="m: the model's batch size is fixed at 4; --batchsize 8"):
        resolve_batchsize(4, 8, "m")
    with pytest.raises(UserError, match="pins the batch to 1: simplify the export with scripts/onnxsim.sh"):
        resolve_batchsize(1, 8, "m")  # what the guide's literal onnxsim command makes


def test_outputs_inside_the_input_folder_are_refused(models, images):
    before = sorted(p.name for p in images.iterdir())
    with pytest.raises(UserError, match="inside the input folder"):
        bench("--model", models / "unet.onnx", "--input", images, "--output", images, "--output_dirname", "x")
    with pytest.raises(UserError, match="inside the input folder"):
        bench("--model", models / "unet.onnx", "--input", images, "--output", images.parent, "--output_dirname",
              images.name)
    assert sorted(p.name for p in images.iterdir()) == before


def test_an_output_folder_under_a_file_is_a_clean_error(models, images, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status = run_cli(main, ["--model", str(models / "unet.onnx"), "--input", str(images), "--output",
                            str(blocker / "r"), "--output_dirname", "x", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith(f"error: {blocker / 'r' / 'x'}: cannot create")


def test_input_takes_files_and_comma_lists_of_files_and_folders_as_ais_bench_does(models, images, tmp_path):
    one = images / "img2.bin"
    bench("--model", models / "unet.onnx", f"--input={one}", "--output", tmp_path / "r", "--output_dirname", "one")
    assert sorted(p.name for p in (tmp_path / "r" / "one").iterdir()) == ["img2_0.bin"]
    np.testing.assert_allclose(np.fromfile(tmp_path / "r" / "one" / "img2_0.bin", np.float32),
                               reference(models / "unet.onnx", one).reshape(-1), rtol=1e-5, atol=1e-5)
    extra = tmp_path / "more"
    extra.mkdir()
    (extra / "b7.bin").write_bytes((images / "img1.bin").read_bytes())
    listing = ",".join(str(p) for p in (images / "img10.bin", images / "img3.bin", extra))  # files, then a folder
    bench("--model", models / "unet.onnx", "--input", listing, "--output", tmp_path / "r", "--output_dirname", "list",
          "--batchsize", 2)
    summary = json.loads((tmp_path / "r" / "list_summary.json").read_text())
    assert [entry["infiles"] for entry in summary["filesinfo"].values()] == [  # the order given, one padded batch
        [str(images / "img10.bin")], [str(images / "img3.bin")], [str(extra / "b7.bin")]]
    assert summary["NPU_compute_time"]["count"] == 2
    np.testing.assert_allclose(np.fromfile(tmp_path / "r" / "list" / "b7_0.bin", np.float32),
                               reference(models / "unet.onnx", images / "img1.bin").reshape(-1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name, message", [("gone.bin", "input file or folder not found"),
                                           ("notes.txt", "expected a .bin or .npy input file")])
def test_input_names_a_missing_or_foreign_file(models, images, tmp_path, name, message):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=rf"{re.escape(str(tmp_path / name))}: {message}"):
        bench("--model", models / "unet.onnx", "--input", f"{images / 'img1.bin'},{tmp_path / name}")


def test_a_run_stopped_by_ctrl_c_says_what_is_left_and_the_same_command_replaces_it(models, images, tmp_path,
                                                                                      monkeypatch, caplog, capsys):
    from unet_infer.bench.files import OutputWriter
    argv = ["--model", str(models / "unet.onnx"), "--input", str(images), "--output", str(tmp_path / "r"),
            "--output_dirname", "bs1", "--quiet"]
    write, calls = OutputWriter.__call__, []

    def stopped_at_the_third_batch(self, batch, outputs):
        calls.append(batch)
        if len(calls) == 3:
            raise KeyboardInterrupt
        write(self, batch, outputs)

    monkeypatch.setattr(OutputWriter, "__call__", stopped_at_the_third_batch)
    assert run_cli(main, argv) == 130
    out_dir = tmp_path / "r" / "bs1"
    assert sorted(p.name for p in out_dir.iterdir()) == ["img1_0.bin", "img2_0.bin"]
    assert not (tmp_path / "r" / "bs1_summary.json").exists()
    assert (f"{out_dir}: stopped with 2 output file(s) written and no summary; the same command replaces them, "
            f"or remove the folder") in caplog.text
    monkeypatch.setattr(OutputWriter, "__call__", write)
    assert run_cli(main, argv) == 0  # the same command: the unfinished run replaced, not refused
    summary = json.loads((tmp_path / "r" / "bs1_summary.json").read_text())
    assert len(summary["filesinfo"]) == 5 and len(list(out_dir.iterdir())) == 5
    assert [p.name for p in (tmp_path / "r").iterdir() if p.name.startswith(".")] == []  # the marker is gone
    with pytest.raises(UserError, match="already holds a run"):  # a finished run stays refused
        bench(*argv)


def test_replacing_an_unfinished_run_removes_its_per_device_summaries(tmp_path):
    from unet_infer.bench.run import refuse_existing_run, unfinished_marker
    out_dir, summary = tmp_path / "x", tmp_path / "x_summary.json"
    out_dir.mkdir()
    unfinished_marker(out_dir).write_text("")
    (tmp_path / "x_device1_summary.json").write_text("{}")  # left by a stopped --device 0,1 run
    (tmp_path / "xy_device1_summary.json").write_text("{}")  # another run's
    refuse_existing_run(out_dir, summary)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["x", "xy_device1_summary.json"]


def test_an_unfinished_run_with_a_file_of_the_user_is_refused_and_kept(models, images, tmp_path, monkeypatch):
    from unet_infer.bench.files import OutputWriter
    write = OutputWriter.__call__

    def stop_at_the_second(self, batch, outputs):
        if batch.index == 1:
            raise KeyboardInterrupt
        write(self, batch, outputs)

    argv = ["--model", models / "unet.onnx", "--input", images, "--output", tmp_path, "--output_dirname", "x"]
    monkeypatch.setattr(OutputWriter, "__call__", stop_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        bench(*argv)
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"x holds an unfinished run of other inputs or another --outfmt"):
        bench(*argv, "--outfmt", "NPY")  # its .bin outputs are not this run's to replace
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"x holds an unfinished run of other inputs"):
        bench(*argv)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["img1_0.bin", "notes.txt"]


def test_time_runs_at_least_that_long_and_writes_the_outputs_once(models, images, tmp_path):
    bench("--model", models / "unet.onnx", "--loop", 2, "--time", 0.3, "--output", tmp_path, "--output_dirname", "p")
    pure = json.loads((tmp_path / "p_summary.json").read_text())
    assert pure["NPU_compute_time"]["count"] > 2 and pure["wall_s"] >= 0.3 and pure["args"]["time"] == 0.3
    # 1 s: a pass over the 3 batches (reading and writing included) fits in it with the other core busy
    bench("--model", models / "unet.onnx", "--input", images, "--batchsize", 2, "-t", 1, "--output", tmp_path,
          "--output_dirname", "f")
    files = json.loads((tmp_path / "f_summary.json").read_text())
    assert files["NPU_compute_time"]["count"] > 3  # more passes than the one over the 3 batches
    assert len(files["filesinfo"]) == 5 and len(list((tmp_path / "f").iterdir())) == 5
    assert files["e2e_latency"]["count"] == 3  # the written pass only


def test_end_to_end_latency_and_the_models_inputs_and_outputs_are_printed(models, images, tmp_path, caplog, capsys):
    caplog.set_level("INFO")
    bench("--model", models / "unet.onnx", "--input", images, "--batchsize", 2, "--loop", 2, "--output", tmp_path,
          "--output_dirname", "x")
    summary = json.loads((tmp_path / "x_summary.json").read_text())
    e2e, compute = summary["e2e_latency"], summary["NPU_compute_time"]
    assert e2e["count"] == 3 and e2e["mean"] >= 2 * compute["mean"] > 0  # each batch: its 2 runs and more
    out = capsys.readouterr().out
    assert f"[INFO] e2e_latency (ms): min = {e2e['min']}, max = {e2e['max']}, mean = {e2e['mean']}," in out
    assert "model inputs: actual_input_1 float32 2x3x32x32" in caplog.text
    assert "model outputs: output 0 float32 2x1x32x32" in caplog.text
    bench("--model", models / "unet.onnx", "--output", tmp_path, "--output_dirname", "pure")
    assert "e2e_latency" not in json.loads((tmp_path / "pure_summary.json").read_text())  # nothing read or written


def test_a_high_run_to_run_spread_is_said(models, caplog, monkeypatch):
    from unet_infer.bench import run
    assert run.spread_warning([10.0, 10.5, 9.5]) is None  # 4%
    assert "varies by 50% run to run (coefficient of variation, above 10%)" in run.spread_warning([5.0, 15.0])
    assert run.spread_warning([7.0]) is None
    monkeypatch.setattr(run, "CV_LIMIT", -1.0)  # any spread is too much
    bench("--model", models / "unet.onnx", "--loop", 3)
    assert "coefficient of variation" in caplog.text and "--warmup_count and --loop (or --time)" in caplog.text
