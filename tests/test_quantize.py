"""INT8 static quantisation: a tiny UNet at 32 x 32, calibrated on a few .bin files written here."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from unet_infer.backends.onnxruntime_backend import OnnxRuntimeBackend
from unet_infer.cli import UserError, run_cli
from unet_infer.export import export_model
from unet_infer.quantize import calibration_files, main, select_evenly
from unet_infer.quantize.graph import upsampling_as_gemm
from unet_infer.quantize.onnxruntime import CalibrationReader, quantize_model

from tiny_unet import SIZE, smooth_images, tiny_unet

INPUT = "actual_input_1"


def export(model, path, size=SIZE):
    export_model(model, path, size)  # as unet_pth2onnx.py exports
    return path


def write_calib(folder, images, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        image.tofile(folder / (names[i] if names else f"img{i}.bin"))
    return folder


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    return export(tiny_unet(), tmp_path_factory.mktemp("fp32") / "UNet_dynamic_sim.onnx")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    return write_calib(tmp_path_factory.mktemp("prep") / "prep_bin", smooth_images(6))


@pytest.fixture(scope="module")
def quantized(fp32_model, calib_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("int8")
    output = out_dir / "UNet_int8.onnx"
    report = quantize_model(fp32_model, calib_dir, output, n_calib=4)
    return output, report


def run(path, batch):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT: batch})[0]


def test_int8_model_is_written_alone_with_qdq_nodes_and_a_dynamic_batch(quantized):
    output, report = quantized
    assert [p.name for p in output.parent.iterdir()] == [output.name]  # no temporary or side files
    model = onnx.load(str(output))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "ConvTranspose" not in ops and "Gemm" in ops  # the up-sampling was rewritten
    for value in (model.graph.input[0], model.graph.output[0]):
        assert not value.type.tensor_type.shape.dim[0].HasField("dim_value")
    assert report["nodes"] == len(model.graph.node)
    assert report["calibration_images"] == 4 and report["rewritten_upsampling"] == 4
    assert report["quantize_nodes"] > 0 and report["dequantize_nodes"] > 0
    assert report["relative_error"] < 0.2 and report["sign_agreement"] >= 0.95


def test_int8_logits_agree_with_fp32_on_unseen_images(quantized, fp32_model):
    batch = np.stack(smooth_images(3, seed=7))
    want, got = run(fp32_model, batch), run(quantized[0], batch)
    assert got.shape == want.shape == (3, 1, SIZE, SIZE)
    assert 0.2 < np.mean(want > 0) < 0.8  # the check means something: both classes occur
    assert np.mean((got > 0) == (want > 0)) >= 0.95
    assert np.abs(got - want).max() / np.abs(want).max() < 0.2


def test_upsampling_rewrite_gives_the_same_values(fp32_model, tmp_path):
    model = onnx.load(str(fp32_model))
    assert upsampling_as_gemm(model) == 4
    assert not any(node.op_type == "ConvTranspose" for node in model.graph.node)
    onnx.checker.check_model(model)
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    batch = np.stack(smooth_images(2, seed=3))
    np.testing.assert_allclose(run(rewritten, batch), run(fp32_model, batch), rtol=1e-4, atol=1e-5)


def test_compiled_int8_model_matches_at_a_fixed_batch(quantized, tmp_path):
    compiled = OnnxRuntimeBackend.compile(quantized[0], tmp_path / "UNet_int8_bs2.onnx", 2, threads=1)
    batch = np.stack(smooth_images(2, seed=5))
    np.testing.assert_allclose(run(compiled, batch), run(quantized[0], batch), rtol=1e-5, atol=1e-5)


def test_cli_zero_padding_runs_in_int8(tmp_path, capsys):
    # At 36 the up path pads 8 -> 9 (36 -> 18 -> 9 -> 4 -> 2 going down), as 572 pads 70 -> 71.
    size = 36
    fp32 = export(tiny_unet(seed=1, size=size), tmp_path / "fp32.onnx", size)
    calib = write_calib(tmp_path / "calib", smooth_images(3, size=size))
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli(main, ["--model", str(fp32), "--calib", str(calib), "--output", str(out / "int8.onnx"),
                          "--n-calib", "2", "--quiet"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "INT8" in summary[0] and "2 image(s)" in summary[0] and "sign agreement" in summary[0]
    assert [p.name for p in out.iterdir()] == ["int8.onnx"]
    model = onnx.load(str(out / "int8.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    pads = [n for n in model.graph.node if n.op_type == "Pad"]  # (unsimplified: one per up-sampling)
    assert pads and all(producers[pad.input[0]].op_type != "DequantizeLinear" for pad in pads)
    batch = np.stack(smooth_images(2, seed=9, size=size))
    want, got = run(fp32, batch), run(out / "int8.onnx", batch)
    assert np.mean((got > 0) == (want > 0)) >= 0.95


def test_calibration_files_natural_order_evenly_spaced(tmp_path):
    names = [f"img{i}.bin" for i in range(12)]
    folder = write_calib(tmp_path / "calib", smooth_images(12), names)
    (folder / "notes.txt").write_text("not an image")
    chosen = calibration_files(folder, 4, 3, SIZE)
    assert [p.name for p in chosen] == ["img0.bin", "img4.bin", "img7.bin", "img11.bin"]
    assert [p.name for p in calibration_files(folder, 50, 3, SIZE)] == names
    assert select_evenly(range(5), 1) == [0]
    reader = CalibrationReader(chosen[:2], INPUT, 3, SIZE)
    first = reader.get_next()
    assert first[INPUT].shape == (1, 3, SIZE, SIZE) and first[INPUT].dtype == np.float32
    assert reader.get_next() is not None and reader.get_next() is None


def test_calibration_size_mismatch_names_file_bytes_and_expected(fp32_model, tmp_path):
    folder = write_calib(tmp_path / "calib", smooth_images(2))
    np.zeros((3, 16, 16), np.float32).tofile(folder / "img1.bin")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UserError) as err:
        quantize_model(fp32_model, folder, out / "int8.onnx")
    message = str(err.value)
    assert "img1.bin" in message and str(3 * 16 * 16 * 4) in message and str(3 * SIZE * SIZE * 4) in message
    assert list(out.iterdir()) == []


def test_user_errors(fp32_model, calib_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .bin files"):
        quantize_model(fp32_model, tmp_path / "empty", tmp_path / "int8.onnx")
    with pytest.raises(UserError, match="folder not found"):
        quantize_model(fp32_model, tmp_path / "none", tmp_path / "int8.onnx")
    with pytest.raises(UserError, match="model not found"):
        quantize_model(tmp_path / "none.onnx", calib_dir, tmp_path / "int8.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(UserError, match="text.onnx: not an ONNX model"):
        quantize_model(tmp_path / "text.onnx", calib_dir, tmp_path / "int8.onnx")
    with pytest.raises(UserError, match="--size 64"):
        quantize_model(fp32_model, calib_dir, tmp_path / "int8.onnx", size=64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "text.onnx"]


def test_cli_errors_are_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "calib").mkdir()
    status = run_cli(main, ["--model", str(tmp_path / "none.onnx"), "--calib", str(tmp_path / "calib"),
                            "--output", str(tmp_path / "int8.onnx"), "--quiet"])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'none.onnx'}: model not found (")


def test_cli_help_shows_the_example_and_defaults(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # as read, whatever the terminal's width
    example = "python3 -m unet_infer.quantize --model UNet_dynamic_sim.onnx --calib prep_bin --output UNet_int8.onnx"
    assert example in text and "--backend onnxruntime --n-calib 16" in text
    assert "(default: 16)" in text and "read from the model" in text and "(default: None)" not in text


@pytest.mark.parametrize("saturates,bits", [(True, 7), (False, 8)])
def test_weights_in_7_bits_only_where_int8_dot_products_saturate(fp32_model, calib_dir, tmp_path, monkeypatch,
                                                                 saturates, bits):
    import unet_infer.quantize.onnxruntime as ort_recipe
    from onnx import numpy_helper
    monkeypatch.setattr(ort_recipe, "int8_saturates", lambda: saturates)
    output = tmp_path / "UNet_int8.onnx"
    report = quantize_model(fp32_model, calib_dir, output, n_calib=2)
    assert report["weight_bits"] == bits
    weights = [numpy_helper.to_array(t) for t in onnx.load(str(output)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert weights
    largest = max(int(np.abs(w.astype(np.int32)).max()) for w in weights)
    # symmetric per channel, each channel's largest weight at the limit: [-64, 64] in 7 bits, [-127, 127] in 8
    assert largest == {7: 64, 8: 127}[bits]


def test_recipe_options_follow_the_cpu():
    from unet_infer.quantize import int8_saturates, recipe_options
    assert int8_saturates({"avx2", "fma"}) and recipe_options({"avx2"}) == {"weight_bits": 7}
    for flag in ("avx512_vnni", "avx_vnni", "amx_int8"):
        assert not int8_saturates({"avx2", flag}) and recipe_options({flag}) == {"weight_bits": 8}
