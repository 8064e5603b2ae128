"""Re-batching a model whose batch the guide's onnxsim line pinned to 1: the compile step (onnxruntime,
openvino) and the runner take the batch from --batchsize where the graph allows it, checked against the
batch-1 model; a graph that keeps the batch 1 gets a clear message naming the file and the op."""

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from unet_infer.backends.onnxruntime_backend import OnnxRuntimeBackend
from unet_infer.bench.runner import main as bench_main
from unet_infer.cli import UserError, run_cli
from unet_infer.compile import main as compile_main
from unet_infer.driver import OPTIONS
from unet_infer.onnxfile import DRIVER_MODELS, DRIVER_WORK, dims, load_onnx, model_not_found
from unet_infer.workdir import Workdir

from tiny_unet import smooth_images, tiny_unet

from unet_infer.backends.openvino_backend import OpenVinoBackend  # noqa: E402 - its telemetry switch first
import openvino  # noqa: E402 - requirements.txt installs it: missing is a failure, not a skip

SIZE = 44  # 44 -> 22 -> 11 -> 5 -> 2: the up-sampling path pads (constant Pads after onnxsim), as at 572
INPUT, OUTPUT = "actual_input_1", "output1"
RTOL = 1e-4  # of the output range: fp32 against onnxruntime's batch-1 run
SUFFIX = {"onnxruntime": ".onnx", "openvino": ".xml"}
PINNED = "batch was pinned to 1"


def output_range_error(got, want):
    return float(np.abs(np.asarray(got) - want).max() / (want.max() - want.min()))


@pytest.fixture(scope="module")
def pinned(tmp_path_factory):
    """The tiny UNet exported with a dynamic batch, then simplified by the guide's own onnxsim line."""
    folder = tmp_path_factory.mktemp("rebatch")
    dynamic, out = folder / "UNet_dynamic_bs.onnx", folder / "UNet_dynamic_sim.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_unet(size=SIZE), torch.zeros(1, 3, SIZE, SIZE), str(dynamic), dynamo=False,
                          opset_version=11, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "-1"}, OUTPUT: {0: "-1"}})
    subprocess.run([sys.executable, "-m", "onnxsim", "--dynamic-input-shape", f"--input-shape=1,3,{SIZE},{SIZE}",
                    str(dynamic), str(out)], check=True, capture_output=True)
    return out


def reference(path, batch):
    """The batch-1 model run on each image of ``batch`` by onnxruntime, stacked."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {session.get_inputs()[0].name: image[None]})[0] for image in batch])


def pinned_messages(caplog):
    return [r.getMessage() for r in caplog.records if PINNED in r.getMessage()]


def test_the_guides_onnxsim_line_pins_the_batch_to_1(pinned):
    model = load_onnx(pinned, weights=False)
    assert dims(model.graph.input[0]) == [1, 3, SIZE, SIZE]  # if onnxsim stops pinning, this test says so
    assert dims(model.graph.output[0])[0] == 1
    assert "Pad" in {node.op_type for node in model.graph.node}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("batchsize", [2, 3])
def test_compile_re_batches_a_pinned_model(pinned, tmp_path, caplog, backend, batchsize):
    caplog.set_level("INFO")
    dst = tmp_path / f"UNet_bs{batchsize}{SUFFIX[backend]}"
    assert run_cli(compile_main, ["--model", str(pinned), "--batchsize", str(batchsize), "--output", str(dst),
                                  "--backend", backend, "--threads", "1"]) == 0
    assert pinned_messages(caplog) == [f"{pinned}: the model's {PINNED} (onnxsim --input-shape); re-batched to "
                                       f"{batchsize} (checked against the batch-1 model: max diff "
                                       + pinned_messages(caplog)[0].split("max diff ")[1]]
    batch = np.stack(smooth_images(batchsize, seed=5, size=SIZE))
    cls = OnnxRuntimeBackend if backend == "onnxruntime" else OpenVinoBackend
    loaded = cls()
    loaded.load(dst, threads=1)
    try:
        assert loaded.batchsize == batchsize and loaded.inputs[0].shape == (batchsize, 3, SIZE, SIZE)
        got = loaded.infer(batch)[0]
    finally:
        loaded.close()
    assert output_range_error(got, reference(pinned, batch)) <= RTOL


def test_no_check_re_batches_and_says_it_was_not_checked(pinned, tmp_path, caplog):
    caplog.set_level("INFO")
    dst = tmp_path / "UNet_bs2.onnx"
    assert run_cli(compile_main, ["--model", str(pinned), "--batchsize", "2", "--output", str(dst), "--no_check"]) == 0
    assert len(pinned_messages(caplog)) == 1 and pinned_messages(caplog)[0].endswith("re-batched to 2 (not checked)")
    assert dims(onnx.load(str(dst)).graph.input[0])[0] == 2


def with_reshape(pinned, path):
    """The pinned model with its output flattened by Reshape(output, [1, -1]): the batch 1 in a constant."""
    model = load_onnx(pinned)
    model.graph.initializer.append(helper.make_tensor("flat_shape", TensorProto.INT64, [2], [1, -1]))
    model.graph.node.append(helper.make_node("Reshape", [OUTPUT, "flat_shape"], ["flat"], name="flatten"))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, [1, SIZE * SIZE]))
    onnx.save(model, str(path))
    return path


def hint(source, op):
    return (rf"{re.escape(str(source))}: its batch axis is pinned to 1 and it cannot be re-batched to 2: .*{op}.*"
            rf"simplify the export with scripts/onnxsim\.sh, which keeps it dynamic")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_reshape_holding_the_batch_is_refused_naming_the_op(pinned, tmp_path, backend):
    source = with_reshape(pinned, tmp_path / "flat.onnx")
    cls = OnnxRuntimeBackend if backend == "onnxruntime" else OpenVinoBackend
    with pytest.raises(UserError, match=hint(source, "Reshape node 'flatten' has the batch 1 in its constant shape")):
        cls.compile(source, tmp_path / f"out{SUFFIX[backend]}", 2, threads=1)
    with pytest.raises(UserError, match=hint(source, "Reshape node 'flatten'")):  # the runner too
        cls().load(source, batchsize=2, threads=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat.onnx"]


def test_a_reshape_holding_the_batch_in_an_ir_is_refused_naming_the_op(pinned, tmp_path):
    ir = tmp_path / "flat.xml"
    openvino.save_model(openvino.Core().read_model(str(with_reshape(pinned, tmp_path / "flat.onnx"))), str(ir))
    with pytest.raises(UserError, match=hint(ir, "its Reshape '.*' has the batch 1 in its constant shape")):
        OpenVinoBackend.compile(ir, tmp_path / "out.xml", 2, threads=1)


def small_model(path, nodes, initializers=(), out_channels=3):
    """A hand-made graph on x (1 x 3 x 8 x 8, batch pinned) -> y."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, out_channels, 8, 8])],
                              list(initializers))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_graph_mixing_the_samples_fails_the_numeric_check(tmp_path, backend):
    """x + mean over the batch: the same shapes at any batch, but not the same numbers as batch 1."""
    source = small_model(tmp_path / "mix.onnx", [helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
                                                 helper.make_node("Add", ["x", "m"], ["y"])])
    cls = OnnxRuntimeBackend if backend == "onnxruntime" else OpenVinoBackend
    with pytest.raises(UserError, match=hint(source, "sample 0 of output 0 differs from the batch-1 model")):
        cls.compile(source, tmp_path / f"out{SUFFIX[backend]}", 2, threads=1, size=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.onnx"]


def test_shapes_that_no_longer_infer_name_the_constant_of_shape(tmp_path):
    source = small_model(tmp_path / "cat.onnx", [
        helper.make_node("ConstantOfShape", ["pad_shape"], ["pad"], name="zeros"),
        helper.make_node("Concat", ["x", "pad"], ["y"], axis=1)],
        [helper.make_tensor("pad_shape", TensorProto.INT64, [4], [1, 1, 8, 8])], out_channels=4)
    with pytest.raises(UserError, match=hint(source, "shape inference fails .*ConstantOfShape node 'zeros'")):
        OnnxRuntimeBackend.compile(source, tmp_path / "out.onnx", 2, threads=1, size=8)


def test_a_reshaped_constant_is_no_harm(tmp_path):
    """A bias reshaped to 1 x C x 1 x 1 broadcasts over any batch: re-batched, and the numbers agree."""
    source = small_model(tmp_path / "bias.onnx", [helper.make_node("Reshape", ["b", "b_shape"], ["b4"]),
                                                  helper.make_node("Add", ["x", "b4"], ["y"])],
                         [helper.make_tensor("b", TensorProto.FLOAT, [3], [0.5, -1.0, 2.0]),
                          helper.make_tensor("b_shape", TensorProto.INT64, [4], [1, 3, 1, 1])])
    for cls, dst in ((OnnxRuntimeBackend, tmp_path / "out.onnx"), (OpenVinoBackend, tmp_path / "out.xml")):
        cls.compile(source, dst, 3, threads=1, size=8)
        backend = cls()
        backend.load(dst, threads=1)
        batch = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
        np.testing.assert_allclose(backend.infer(batch)[0], batch + np.array([0.5, -1.0, 2.0])[:, None, None],
                                   rtol=1e-6)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_runner_re_batches_a_pinned_model(pinned, tmp_path, caplog, backend):
    caplog.set_level("INFO")
    images = tmp_path / "prep_bin"
    images.mkdir()
    batch = np.stack(smooth_images(3, seed=9, size=SIZE))
    for i, image in enumerate(batch):
        image.tofile(images / f"img{i}.bin")
    bench_main(["--model", str(pinned), "--batchsize", "2", "--backend", backend, "--input", str(images),
                "--output", str(tmp_path / "result"), "--output_dirname", "bs2", "--threads", "1", "--quiet"])
    summary = json.loads((tmp_path / "result" / "bs2_summary.json").read_text())
    assert summary["batchsize"] == 2 and summary["NPU_compute_time"]["count"] == 2  # 3 images: 2 batches
    got = np.stack([np.fromfile(tmp_path / "result" / "bs2" / f"img{i}_0.bin", np.float32) for i in range(3)])
    assert output_range_error(got, reference(pinned, batch).reshape(3, -1)) <= RTOL
    assert len(pinned_messages(caplog)) == 1 and "re-batched to 2 (checked" in pinned_messages(caplog)[0]


def test_a_missing_model_says_where_the_driver_writes_models(tmp_path):
    path = tmp_path / "UNet_bs8.onnx"
    message = (f"{path}: model not found (scripts/run_all.sh writes its models into the work folder, work/ by "
               f"default: e.g. work/UNet_dynamic_sim.onnx, work/UNet_bs8.onnx, work/UNet_int8_bs1.xml)")
    assert model_not_found(path) == message
    for load in (load_onnx, lambda p: OpenVinoBackend().load(p)):
        with pytest.raises(UserError, match=re.escape(message)):
            load(path)


def test_the_missing_model_hint_spells_the_drivers_own_names():
    work = Workdir(DRIVER_WORK)
    assert [str(work / name) for name in DRIVER_MODELS] == [
        str(work.simplified), str(work.model(OnnxRuntimeBackend, "fp32", 8, None)),
        str(work.model(OpenVinoBackend, "int8", 1, None))]
    assert OPTIONS["workdir"][0] == f"./{DRIVER_WORK}"  # the driver's default workdir=


def test_an_ir_compiled_for_batch_1_is_not_re_batched(pinned, tmp_path):
    """Re-batching is for the guide's onnxsim output, not for a model compiled for one batch size (as an .om)."""
    ir = OpenVinoBackend.compile(pinned, tmp_path / "UNet_bs1.xml", 1, threads=1)
    with pytest.raises(UserError, match="fixed at 1; compile the dynamic-batch model"):
        OpenVinoBackend.compile(ir, tmp_path / "UNet_bs2.xml", 2, threads=1)
    with pytest.raises(UserError, match="fixed at 1; --batchsize 2 conflicts"):
        OpenVinoBackend().load(ir, batchsize=2, threads=1)


def test_an_int8_model_quantised_from_the_pinned_one_is_re_batched(pinned, tmp_path):
    from unet_infer.quantize.onnxruntime import quantize_model
    from unet_infer.rebatch import LOW_PRECISION_TOLERANCE
    calib = tmp_path / "prep_bin"
    calib.mkdir()
    for i, image in enumerate(smooth_images(2, seed=11, size=SIZE)):
        image.tofile(calib / f"img{i}.bin")
    int8 = tmp_path / "UNet_int8.onnx"
    quantize_model(pinned, calib, int8, n_calib=2, threads=1)
    assert dims(load_onnx(int8, weights=False).graph.input[0])[0] == 1  # pinned as its source was
    compiled = OnnxRuntimeBackend.compile(int8, tmp_path / "UNet_int8_bs2.onnx", 2, threads=1)
    backend = OnnxRuntimeBackend()
    backend.load(compiled, threads=1, precision="int8")
    batch = np.stack(smooth_images(2, seed=12, size=SIZE))
    assert output_range_error(backend.infer(batch)[0], reference(int8, batch)) <= LOW_PRECISION_TOLERANCE
