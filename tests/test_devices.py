"""``--device 0,1`` cuts the inputs at whole batches of the model's own batch when --batchsize is
not given: the backend class reads the fixed batch from the model file (``fixed_batchsize``), so
only the last device pads. A width-4 UNet at 32 x 32, compiled at batch 2."""

import argparse

import numpy as np
import pytest
import torch

from unet_infer import summary as summ
from unet_infer.backends import get_backend
from unet_infer.backends.onnxruntime_backend import OnnxRuntimeBackend
from unet_infer.bench.devices import shard_bounds, shard_unit
from unet_infer.bench.runner import main as bench_main

from tiny_unet import SIZE, smooth_images, tiny_unet

BS = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``(dynamic ONNX, the same compiled at batch 2)``."""
    folder = tmp_path_factory.mktemp("devices")
    dynamic = folder / "UNet_dynamic.onnx"
    torch.onnx.export(tiny_unet(), torch.zeros(1, 3, SIZE, SIZE), str(dynamic), dynamo=False, opset_version=11,
                      input_names=["actual_input_1"], output_names=["output1"],
                      dynamic_axes={"actual_input_1": {0: "-1"}, "output1": {0: "-1"}})
    compiled = OnnxRuntimeBackend.compile(dynamic, folder / f"UNet_bs{BS}.onnx", BS, threads=1, size=SIZE)
    return dynamic, compiled


def test_the_backend_reads_the_models_own_batch(models, tmp_path):
    dynamic, compiled = models
    assert OnnxRuntimeBackend.fixed_batchsize(compiled) == BS
    assert OnnxRuntimeBackend.fixed_batchsize(dynamic) is None
    assert get_backend("torch").fixed_batchsize(tmp_path / "UNet.pth") is None  # the checkpoint fixes none
    openvino = get_backend("openvino")
    ir = openvino.compile(dynamic, tmp_path / "UNet_bs4.xml", 4, threads=1, size=SIZE, check=False)
    assert openvino.fixed_batchsize(ir) == 4


def test_the_shard_unit_is_batchsize_else_the_models_batch(models):
    dynamic, compiled = models
    assert shard_unit(argparse.Namespace(batchsize=None, model=str(compiled)), OnnxRuntimeBackend) == BS
    assert shard_unit(argparse.Namespace(batchsize=4, model=str(dynamic)), OnnxRuntimeBackend) == 4
    assert shard_unit(argparse.Namespace(batchsize=None, model=str(dynamic)), OnnxRuntimeBackend) == 1
    # the case: a bs-8 model, 32 files, 3 devices: whole batches of 8 each, not 11/10/11
    assert [b - a for a, b in shard_bounds(32, 3, 8)] == [8, 16, 8]


def test_two_devices_without_batchsize_split_at_the_models_batch(models, tmp_path, capsys):
    _, compiled = models
    folder = tmp_path / "prep_bin"
    folder.mkdir()
    for i, image in enumerate(smooth_images(5, seed=3)):
        image.tofile(folder / f"img{i}.bin")
    common = ["--model", str(compiled), "--input", str(folder), "--output", str(tmp_path), "--threads", "2",
              "--quiet"]
    bench_main([*common, "--output_dirname", "one"])
    bench_main([*common, "--output_dirname", "two", "--device", "0,1"])
    capsys.readouterr()
    merged = summ.read_summary(tmp_path / "two_summary.json")
    # 5 files at batch 2: device 0 gets 2 whole batches, device 1 the last (padded) one; split per
    # file it would be 2 / 3, and device 1 would pad too
    assert [p["n_images"] for p in summ.device_summaries(merged)] == [4, 1]
    for device, files in ((0, 4), (1, 1)):
        part = summ.read_summary(tmp_path / f"two_device{device}_summary.json")
        assert len(part["filesinfo"]) == files and part["batchsize"] == BS
    assert list(tmp_path.glob(".*.unfinished")) == []  # the runner's mark of a run in progress, gone
    one, two = tmp_path / "one", tmp_path / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    for path in one.iterdir():
        assert np.array_equal(np.fromfile(path, np.float32), np.fromfile(two / path.name, np.float32))
