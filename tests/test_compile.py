"""The per-batch compile step: a fixed-batch, pre-optimised ONNX model with the same outputs."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from unet_infer.backends.onnxruntime_backend import OnnxRuntimeBackend
from unet_infer.compile import main
from unet_infer.cli import UserError, run_cli
from unet_infer.export import export_model
from unet_infer.model import UNet

compile_onnx = OnnxRuntimeBackend.compile

SIZE = 32


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "UNet_dynamic_sim.onnx"
    torch.manual_seed(0)
    export_model(UNet(width=4).eval(), path, SIZE)  # as unet_pth2onnx.py exports
    return path


def batch_dims(model):
    return [v.type.tensor_type.shape.dim[0].dim_value for v in list(model.graph.input) + list(model.graph.output)]


def test_fixed_batch_with_metadata_and_equal_outputs(dynamic_model, tmp_path):
    dst = tmp_path / "UNet_bs3.onnx"
    assert run_cli(main, ["--model", str(dynamic_model), "--batchsize", "3", "--output", str(dst),
                          "--threads", "1"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["UNet_bs3.onnx"]  # no temporary files left
    model = onnx.load(str(dst))
    assert batch_dims(model) == [3, 3]
    assert {p.key: p.value for p in model.metadata_props} == {"unet_infer.optimized": "1",
                                                               "unet_infer.batchsize": "3"}
    batch = np.random.default_rng(0).random((3, 3, SIZE, SIZE), dtype=np.float32)
    want = ort.InferenceSession(str(dynamic_model)).run(None, {"actual_input_1": batch})[0]
    backend = OnnxRuntimeBackend()
    backend.load(dst, threads=1)
    assert backend.batchsize == 3
    assert (backend.session.get_session_options().graph_optimization_level
            == ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    np.testing.assert_allclose(backend.infer(batch)[0], want, rtol=1e-5, atol=1e-5)


def test_an_already_fixed_batch_is_refused_and_nothing_is_left(dynamic_model, tmp_path):
    fixed = compile_onnx(dynamic_model, tmp_path / "UNet_bs2.onnx", 2, threads=1, check=False)
    with pytest.raises(UserError, match="already has a fixed batch of 2"):
        compile_onnx(fixed, tmp_path / "UNet_bs4.onnx", 4)
    assert [p.name for p in tmp_path.iterdir()] == ["UNet_bs2.onnx"]
    assert compile_onnx(fixed, tmp_path / "again.onnx", 2, threads=1).is_file()


def test_a_compiled_batch_1_model_is_not_re_batched(dynamic_model, tmp_path):
    """Re-batching is for the guide's onnxsim output (tests/test_rebatch.py), not for a compiled model."""
    fixed = compile_onnx(dynamic_model, tmp_path / "UNet_bs1.onnx", 1, threads=1, check=False)
    with pytest.raises(UserError, match="already has a fixed batch of 1; compile the dynamic-batch model"):
        compile_onnx(fixed, tmp_path / "UNet_bs4.onnx", 4)
    assert [p.name for p in tmp_path.iterdir()] == ["UNet_bs1.onnx"]


def test_bad_sources(dynamic_model, tmp_path):
    with pytest.raises(UserError, match="model not found"):
        compile_onnx(tmp_path / "none.onnx", tmp_path / "out.onnx", 1)
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(UserError, match="text.onnx: not an ONNX model"):
        compile_onnx(tmp_path / "text.onnx", tmp_path / "out.onnx", 1)
    with pytest.raises(UserError, match="must not overwrite the source"):
        compile_onnx(dynamic_model, dynamic_model, 1)


def test_an_output_under_a_file_is_a_clean_error(dynamic_model, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status = run_cli(main, ["--model", str(dynamic_model), "--batchsize", "2", "--output",
                            str(blocker / "UNet_bs2.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == [f"error: {blocker}: output folder not found"]
