"""The openvino backend on a width-4 UNet at 32 x 32: parity with onnxruntime (fp32, bf16, INT8),
the IR round trip, NNCF quantisation end to end, throughput mode (--nireq), --profile for every
backend that has a profiler, the precision it records, and its errors. No speed is asserted."""

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from unet_infer import backends
from unet_infer.bench.runner import main as bench_main
from unet_infer.cli import UserError, run_cli
from unet_infer.compile import main as compile_main
from unet_infer.metrics import relative_error
from unet_infer.onnxfile import WEIGHTS_KEY, count_ops, load_onnx, set_metadata
from unet_infer.quantize import main as quantize_main

import unet_infer.backends.openvino_backend  # noqa: F401 - first: its openvino_telemetry_off() before openvino
import openvino  # noqa: E402 - requirements.txt installs it: missing is a failure, not a skip
from unet_infer.backends.openvino_backend import OpenVinoBackend, read_model, rt_text, RT_WEIGHTS  # noqa: E402

from tiny_unet import SIZE, smooth_images, tiny_unet  # noqa: E402

INPUT, OUTPUT = "actual_input_1", "output1"
WEIGHTS = "tiny.pth sha256:0123456789abcdef"
# Stated tolerances against onnxruntime fp32 (relative error = max |diff| / max |reference|).
FP32_RTOL = 1e-4
BF16_RTOL = 0.05  # 8-bit mantissa through 23 layers
INT8_RTOL = 0.5  # this random He-initialised model is hard to quantise: onnxruntime's own INT8 gets 0.32
SIGN_AGREEMENT = 0.95  # fraction of pixels with the same class as fp32 (bf16, INT8; onnxruntime INT8: 0.974)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The raw export (shape arithmetic and all, weights id in its metadata), its simplified form,
    six calibration .bin files and a batch of four images."""
    folder = tmp_path_factory.mktemp("ov")
    raw = folder / "UNet_dynamic_bs.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_unet(), torch.zeros(1, 3, SIZE, SIZE), str(raw), dynamo=False, opset_version=11,
                          input_names=[INPUT], output_names=[OUTPUT], dynamic_axes={INPUT: {0: "-1"}, OUTPUT: {0: "-1"}})
    model = load_onnx(raw)
    set_metadata(model, {WEIGHTS_KEY: WEIGHTS})
    onnx.save(model, str(raw))
    calib = folder / "prep_bin"
    calib.mkdir()
    for i, image in enumerate(smooth_images(6, seed=7)):
        image.tofile(calib / f"img{i}.bin")
    batch = np.stack(smooth_images(4, seed=3))
    return {"folder": folder, "raw": raw, "calib": calib, "batch": batch}


def reference(path, batch):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT: batch})[0]


def run(path, batch, **kwargs):
    backend = OpenVinoBackend()
    backend.load(path, batchsize=len(batch), size=SIZE, **kwargs)
    try:
        return backend.infer(batch)[0], backend
    finally:
        backend.close()


def agreement(a, b):
    return float(np.mean((a > 0) == (b > 0)))


@pytest.fixture(scope="module")
def int8_ir(models):
    """The NNCF INT8 IR of the raw export (its shape arithmetic folded first), and the quantiser's report."""
    from unet_infer.quantize.openvino import quantize_model
    output = models["folder"] / "UNet_int8.xml"
    return output, quantize_model(models["raw"], models["calib"], output, n_calib=4)


def test_declarations_need_no_openvino_and_name_the_files():
    code = ("import json, sys; from unet_infer import backends; cls = backends.get_backend('openvino'); "
            "print(json.dumps([cls.precisions, cls.artefact('bf16', 8), cls.artefact('int8', 8), cls.quantized_name, "
            "backends.backend_for_model('m.xml'), 'openvino' in sys.modules, 'nncf' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [["fp32", "bf16", "int8"], "UNet_bs8.xml", "UNet_int8_bs8.xml", "UNet_int8.xml",
                               "openvino", False, False]


def test_fp32_matches_onnxruntime_from_onnx_and_from_the_compiled_ir(models, tmp_path):
    want = reference(models["raw"], models["batch"])
    got, backend = run(models["raw"], models["batch"], precision="fp32")
    assert backend.precision == "fp32" and backend.weights == WEIGHTS
    assert relative_error(got, want) <= FP32_RTOL
    ir = tmp_path / "UNet_bs4.xml"
    assert run_cli(compile_main, ["--backend", "openvino", "--model", str(models["raw"]), "--batchsize", "4",
                                  "--output", str(ir), "--size", str(SIZE)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["UNet_bs4.bin", "UNet_bs4.xml"]  # nothing else left
    model = read_model(ir)
    assert list(model.input(0).get_shape()) == [4, 3, SIZE, SIZE]  # static, as an .om
    assert rt_text(model, RT_WEIGHTS) == WEIGHTS  # the checkpoint travels into the IR
    got, backend = run(ir, models["batch"])
    assert relative_error(got, want) <= FP32_RTOL and backend.weights == WEIGHTS and backend.batchsize == 4
    with pytest.raises(UserError, match="fixed at 4"):
        run(ir, models["batch"][:2])
    with pytest.raises(UserError, match="fixed at 4"):  # a static IR is not compiled again for another batch
        OpenVinoBackend.compile(ir, tmp_path / "UNet_bs2.xml", 2, size=SIZE)
    with pytest.raises(UserError, match=r"\.xml"):
        OpenVinoBackend.compile(models["raw"], tmp_path / "UNet_bs2.onnx", 2, size=SIZE)
    (tmp_path / "UNet_bs4.bin").unlink()
    with pytest.raises(UserError, match="UNet_bs4.bin are missing"):
        run(ir, models["batch"])


def test_bf16_is_recorded_as_what_the_cpu_ran(models):
    want = reference(models["raw"], models["batch"])
    got, backend = run(models["raw"], models["batch"], precision="bf16")
    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert backend.precision == ("bf16" if has_bf16 else "fp32")  # a CPU without bf16 runs fp32, and says so
    assert relative_error(got, want) <= (BF16_RTOL if has_bf16 else FP32_RTOL)
    assert agreement(got, want) >= SIGN_AGREEMENT


def test_int8_quantised_from_the_raw_export_runs_as_int8_close_to_fp32(models, int8_ir, tmp_path):
    output, report = int8_ir
    assert report["folded_shapes"] and report["calibration_images"] == 4 and report["runs_in"] == "int8"
    assert report["sign_agreement"] >= SIGN_AGREEMENT
    model = read_model(output)
    assert [op.get_type_name() for op in model.get_ops()].count("FakeQuantize") >= 23  # every Conv and ConvTranspose
    assert rt_text(model, RT_WEIGHTS) == WEIGHTS
    want = reference(models["raw"], models["batch"])
    got, backend = run(output, models["batch"])
    assert backend.precision == "int8" and backend.weights == WEIGHTS
    assert relative_error(got, want) <= INT8_RTOL and agreement(got, want) >= SIGN_AGREEMENT
    with pytest.raises(UserError, match="the model computes in int8"):
        run(output, models["batch"], precision="fp32")
    with pytest.raises(UserError, match="computes in fp32; make an INT8 model"):
        run(models["raw"], models["batch"], precision="int8")
    compiled = tmp_path / "UNet_int8_bs2.xml"
    OpenVinoBackend.compile(output, compiled, 2, size=SIZE)
    got2, backend = run(compiled, models["batch"][:2], precision="int8")
    assert backend.precision == "int8" and np.allclose(got2, got[:2], rtol=1e-4, atol=1e-4)


def test_onnxruntime_quantiser_folds_a_raw_export_first(models, tmp_path):
    from unet_infer.quantize.onnxruntime import quantize_model
    assert count_ops(load_onnx(models["raw"])).get("Shape")
    report = quantize_model(models["raw"], models["calib"], tmp_path / "UNet_int8.onnx", n_calib=2)
    ops = count_ops(load_onnx(tmp_path / "UNet_int8.onnx"))
    assert report["folded_shapes"] and not ops.get("Shape")  # no DequantizeLinear left feeding shape arithmetic


def bench(tmp_path, capsys, *args):
    status = run_cli(bench_main, ["--quiet", *map(str, args)])
    out = capsys.readouterr()
    return status, out.out, out.err


def test_nireq_gives_the_sync_outputs_and_adds_the_wall_clock_throughput(models, tmp_path, capsys):
    prep = tmp_path / "prep"
    prep.mkdir()
    for i, image in enumerate(smooth_images(5, seed=9)):
        image.tofile(prep / f"img{i}.bin")
    common = ["--model", models["raw"], "--backend", "openvino", "--input", prep, "--output", tmp_path / "result",
              "--batchsize", 2, "--size", SIZE, "--loop", 2]
    assert bench(tmp_path, capsys, *common, "--output_dirname", "sync")[0] == 0
    status, out, err = bench(tmp_path, capsys, *common, "--output_dirname", "n3", "--nireq", 3)
    assert status == 0, err
    assert "throughput with 3 requests in flight (wall clock" in out and "percentiles (ms): p50 = " in out
    for i in range(5):
        a = np.fromfile(tmp_path / "result" / "sync" / f"img{i}_0.bin", np.float32)
        b = np.fromfile(tmp_path / "result" / "n3" / f"img{i}_0.bin", np.float32)
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "result" / "n3_summary.json").read_text())
    assert summary["nireq"] == 3 and summary["nireq_throughput"] > 0 and summary["NPU_compute_time"]["count"] == 6
    assert [v["infiles"][0].rsplit("/", 1)[-1] for v in summary["filesinfo"].values()] == [
        f"img{i}.bin" for i in range(5)]  # in input order, however the requests finished
    assert "nireq" not in json.loads((tmp_path / "result" / "sync_summary.json").read_text())


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_profile_writes_per_layer_times_and_prints_the_slowest(models, tmp_path, capsys, backend):
    path = tmp_path / "profile.json"
    status, out, err = bench(tmp_path, capsys, "--model", models["raw"], "--backend", backend, "--loop", 3,
                             "--size", SIZE, "--profile", path)
    assert status == 0, err
    doc = json.loads(path.read_text())
    assert doc["backend"] == backend and doc["runs"] == 3 and len(doc["layers"]) >= 19
    assert all({"name", "type", "ms", "percent"} <= set(row) for row in doc["layers"])
    assert [row["ms"] for row in doc["layers"]] == sorted((row["ms"] for row in doc["layers"]), reverse=True)
    assert any(row["type"] in ("Convolution", "Conv", "FusedConv") for row in doc["layers"])
    assert f"slowest layers ({backend} profiler" in out and doc["layers"][0]["name"] in out


def test_errors_are_clear(models, tmp_path, capsys):
    pth = tmp_path / "unet.pth"
    torch.save(tiny_unet().state_dict(), pth)
    cases = [
        (["--model", pth, "--size", SIZE, "--profile", tmp_path / "p.json"], "torch backend has no per-layer profiler"),
        (["--model", models["raw"], "--nireq", 2], "--nireq is an option of the openvino backend"),
        (["--model", models["raw"], "--backend", "openvino", "--nireq", 0], "0 is below 1"),
        (["--model", models["raw"], "--backend", "openvino", "--precision", "fp16"], "not available on the openvino"),
        (["--model", tmp_path / "none.xml"], "model not found"),
    ]
    for args, words in cases:
        status, out, err = bench(tmp_path, capsys, *args)
        assert status == 2 and words in err, (args, err)
    assert run_cli(quantize_main, ["--backend", "openvino", "--model", str(models["raw"]), "--calib",
                                   str(models["calib"]), "--output", str(tmp_path / "x.onnx")]) == 2
    assert "name it .xml" in capsys.readouterr().err


def test_the_driver_plan_resolves_auto_and_names_the_backend(tmp_path, play_cpu):
    from unet_infer.stages import plan  # auto's rule itself: tests/test_auto.py
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    play_cpu("avx512_vnni amx_int8 amx_bf16 avx512_bf16")
    values = plan(tmp_path, weights, "auto", None, [8])
    assert values["BACKEND"] == backends.default_backend(flags={"amx_int8"}) and values["PRECISION"] == "fp32"
    play_cpu("avx2 fma")
    assert plan(tmp_path, weights, "auto", None, [8])["BACKEND"] == "onnxruntime"
    ov = plan(tmp_path, weights, "openvino", "int8", [8])
    assert (ov["BACKEND"], ov["QUANTIZED"].name, ov["MODEL_8"].name) == ("openvino", "UNet_int8.xml",
                                                                         "UNet_int8_bs8.xml")
    # the weight bits are decided where the quantise stage's manifest is made (tests/test_stages.py)
    assert "WEIGHT_BITS" not in ov and "WEIGHT_BITS" not in values


def test_overflow_fix_only_where_int8_dot_products_are_16_bit():
    from unet_infer.quantize.openvino import overflow_fix
    assert overflow_fix({"avx2", "fma"}) == "enable"
    for flag in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert overflow_fix({"avx2", flag}) == "first_layer_only"
