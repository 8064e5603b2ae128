"""What only one backend has is declared on ``Backend`` (with a default for the others), never
probed: in-flight runs, profiling, compile options, the model's batch, the GPU, and the kind of a
backend whose models another program runs (``ExternalBackend``)."""

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_infer import backends, compile as compile_cli, predict, stages
from unet_infer.backends.base import Backend, ExternalBackend, TensorSpec
from unet_infer.loop import Timings, run_loop, warm_up
from unet_infer.bench.run import check_profile_target
from unet_infer.speed.runs import fallback_machine
from unet_infer.cli import UserError, run_cli
from unet_infer.model import UNet

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


class Doubler(Backend):
    """A backend of nothing but the base's defaults and a ``run`` that doubles its input."""

    name = "doubler"

    def load(self, model_path, batchsize=None, device=0, precision="fp32", threads=None, size=SIZE, profile=False):
        self.batchsize = batchsize or 1
        self.inputs = [TensorSpec("x", (self.batchsize, 1), np.dtype(np.float32))]
        self.runs = 0

    def run(self, *inputs):
        self.runs += 1
        return [inputs[0] * 2]


def feeds(n):
    return [([np.full((1, 1), i, np.float32)], i) for i in range(n)]


# ---- in-flight runs ----

def test_the_base_runs_one_request_at_a_time_through_run_async_and_finished():
    backend = Doubler()
    backend.load(None)
    backend.run_async([np.ones(1)], tag="a")
    backend.run_async([np.ones(1)], tag="b", keep=False)
    done = backend.finished()
    assert [(tag, keep) for tag, keep, _, _ in done] == [("a", True), ("b", False)]
    assert np.array_equal(done[0][2][0], [2.0]) and done[1][2] is None and all(ms >= 0 for *_, ms in done)
    assert backend.finished(wait=True) == [] and backend.runs == 2


@pytest.mark.parametrize("requests", [0, 2])
def test_the_loop_asks_the_declaration_and_gives_the_same_outputs(requests):
    """``async_requests`` = 0: the synchronous loop; N > 0: the in-flight loop (here the base's
    synchronous run_async), outputs in feed order either way."""
    backend = Doubler()
    backend.load(None)
    backend.async_requests = requests
    warm_up(backend, [np.zeros((1, 1), np.float32)], 2)
    assert backend.runs == 2 + 2 * requests  # every request warmed up too
    got, timings = [], Timings()
    assert run_loop(backend, feeds(4), lambda tag, out: got.append((tag, float(out[0][0, 0]))), timings, loop=3) == 4
    assert got == [(0, 0.0), (1, 2.0), (2, 4.0), (3, 6.0)]
    assert len(timings.compute) == 12 and timings.requests == requests
    assert (timings.loop_ms is not None) == bool(requests)


# ---- profiling ----

def test_profiling_is_declared_and_refused_with_one_message(tmp_path):
    assert backends.profilers() == ["onnxruntime", "openvino"] and not Backend.can_profile
    for cls in (backends.get_backend("torch"), Doubler):
        with pytest.raises(UserError, match=re.escape(f"--profile: the {cls.name} backend has no per-layer profiler "
                                                      f"here; profile the ONNX model with --backend onnxruntime "
                                                      f"or openvino")):
            check_profile_target(tmp_path / "p.json", cls)
    check_profile_target(tmp_path / "p.json", backends.get_backend("onnxruntime"))  # no error


# ---- compile options ----

def test_compile_flags_come_from_the_backends_declarations():
    declared = {option.dest: cls.name for cls in backends.all_backends() for option in cls.compile_options}
    assert declared == {"chip": "acl"}
    parser = compile_cli.build_parser()
    args = parser.parse_args(["--model", "m.onnx", "--batchsize", "2", "--output", "o.om", "--chip", "310P3"])
    assert compile_cli.backend_options(args, backends.get_backend("acl"), "compile_options") == {"chip": "310P3"}
    with pytest.raises(UserError, match="--chip is a compile option of the acl backend, not of openvino"):
        compile_cli.backend_options(args, backends.get_backend("openvino"), "compile_options")
    plain = parser.parse_args(["--model", "m.onnx", "--batchsize", "2", "--output", "o.onnx"])
    assert compile_cli.backend_options(plain, backends.get_backend("onnxruntime"), "compile_options") == {}


def test_chip_is_refused_before_any_work(tmp_path, capsys):
    status = run_cli(compile_cli.main, ["--model", str(tmp_path / "none.onnx"), "--batchsize", "2",
                                        "--output", str(tmp_path / "UNet_bs2.xml"), "--chip", "310P3"])
    assert status == 2 and "--chip is a compile option of the acl backend" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---- the model's batch ----

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A width-4 UNet as a dynamic-batch ONNX model, its OpenVINO IR fixed at batch 2, and its .pth."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = UNet(width=4).eval()
    torch.save(model.state_dict(), folder / "unet.pth")
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), str(folder / "unet.onnx"), dynamo=False,
                      opset_version=11, input_names=["actual_input_1"], output_names=["output1"],
                      dynamic_axes={"actual_input_1": {0: "-1"}, "output1": {0: "-1"}})
    backends.get_backend("openvino").compile(folder / "unet.onnx", folder / "UNet_bs2.xml", 2, threads=1,
                                             size=SIZE, check=False)
    return folder


def test_fixed_batchsize_is_read_by_each_backend(models):
    ort, ov, pth = (backends.get_backend(name) for name in ("onnxruntime", "openvino", "torch"))
    assert ort.fixed_batchsize(models / "unet.onnx") is None
    assert ov.fixed_batchsize(models / "UNet_bs2.xml") == 2
    assert ov.fixed_batchsize(models / "unet.onnx") is None
    assert pth.fixed_batchsize(models / "unet.pth") is None
    assert predict.batch_to_ask(ov, models / "UNet_bs2.xml", None, 10) is None  # the IR's own batch
    assert predict.batch_to_ask(ort, models / "unet.onnx", None, 10) == predict.DEFAULT_BATCH
    assert predict.batch_to_ask(pth, models / "unet.pth", None, 3) == 3
    assert predict.batch_to_ask(ov, models / "UNet_bs2.xml", 2, 10) == 2


def test_predict_runs_a_fixed_batch_openvino_ir_at_its_own_batch(models, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # an odd count: the last batch of the batch-2 IR is padded
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(photos / f"car{i}.png")
    status = run_cli(predict.main, ["--input", str(photos), "--output", str(tmp_path / "masks"), "--model",
                                    str(models / "UNet_bs2.xml"), "--size", str(SIZE), "--threads", "1",
                                    "--workers", "1", "--quiet"])
    assert status == 0
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == [f"car{i}_mask.png" for i in range(3)]


# ---- the GPU ----

def test_the_gpu_is_asked_of_the_backends_uniformly(monkeypatch):
    assert Backend.has_gpu() is False and backends.get_backend("openvino").has_gpu() is False
    assert backends.has_gpu(installed=set()) is False
    torch_cls = backends.get_backend("torch")
    monkeypatch.setattr(torch_cls, "has_gpu", staticmethod(lambda: True))
    assert backends.has_gpu(installed={"torch"}) and backends.has_gpu("torch", installed={"torch"})
    assert not backends.has_gpu("onnxruntime", installed={"torch"})  # not installed: never asked
    ort_cls = backends.get_backend("onnxruntime")
    monkeypatch.setattr(ort_cls, "has_gpu", staticmethod(lambda: True))
    choice, _, why = backends.auto_choice(flags={"amx_int8"}, installed={"onnxruntime", "openvino"})
    assert choice == "onnxruntime" and "a CUDA/TensorRT provider" in why


# ---- a backend whose models another program runs ----

def test_external_is_a_kind_of_backend_and_the_flows_ask_one_helper():
    kinds = {cls.name: issubclass(cls, ExternalBackend) for cls in backends.all_backends()}
    assert kinds == {"onnxruntime": False, "torch": False, "acl": True, "openvino": False}
    assert backends.in_process("openvino", "the streaming mode") is backends.get_backend("openvino")
    with pytest.raises(UserError) as caught:
        backends.in_process("acl", "the streaming mode")
    assert str(caught.value) == ("the streaming mode runs a backend in this process, not acl, whose models run in "
                                 "Huawei's ais_bench (python3 -m ais_bench); choose one of onnxruntime, torch, "
                                 "openvino")


@pytest.mark.parametrize("flow,words", [
    ("stream", "stream=1 runs a backend in this process, not acl"),
    ("cluster", "cluster=ray (each Ray actor) runs a backend in this process, not acl"),
    ("files", "the acl backend needs")])
def test_the_driver_plan_refuses_an_external_backend_for_the_in_process_flows(tmp_path, flow, words):
    weights = tmp_path / "w.pth"
    torch.save(UNet(width=4).state_dict(), weights)
    with pytest.raises(UserError, match=re.escape(words)):
        stages.plan(tmp_path / "work", weights, "acl", None, [8], flow)
    assert "EXTERNAL" not in stages.plan(tmp_path / "work", weights, "onnxruntime", None, [8], "stream")


def test_the_runner_checks_the_precision_of_an_external_backend(tmp_path, capsys):
    from unet_infer.bench.runner import main as bench_main
    assert run_cli(bench_main, ["--model", str(tmp_path / "UNet_bs8.om"), "--precision", "fp32"]) == 2
    assert "precision fp32 is not available on the acl backend" in capsys.readouterr().err


def test_a_row_without_a_machine_gets_the_device_an_external_backend_declares():
    assert fallback_machine("acl").endswith(", Ascend NPU")
    assert not fallback_machine("onnxruntime").endswith("NPU")


def test_no_flow_names_a_backend_to_ask_what_it_can_do():
    """Outside the backends, no code compares a backend's name or reads a probe of what it has."""
    named = "|".join(backends.names())
    pattern = re.compile(rf"""\.external\b|getattr\(backend|(?<![.\w])(name|backend)\s*[!=]=\s*["']({named})["']"""
                         rf"""|in \(None, ["']({named})["']""")
    found = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "unet_infer").rglob("*.py"))
             if "backends" not in path.parts
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    shell = (ROOT / "scripts" / "run_all.sh").read_text(encoding="utf-8")
    assert found == [] and "EXTERNAL" not in shell, found


def test_option_add_to_gives_the_declared_flag():
    parser = argparse.ArgumentParser()
    for option in backends.get_backend("acl").compile_options + backends.get_backend("torch").options:
        option.add_to(parser)
    args = parser.parse_args(["--chip", "310B1", "--cuda-graph"])
    assert args.chip == "310B1" and args.cuda_graph is True and args.torch_compile is False
