"""One module opens a model for every flow (``session.py``), and one module builds every summary key
(``summary.py``): what the flows may no longer do themselves, and what the two do for them."""

import ast
import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from tiny_unet import SIZE, tiny_onnx
from unet_infer import session, summary
from unet_infer.bench.runner import main as bench_main
from unet_infer.cli import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ["bench/runner.py", "bench/run.py", "bench/devices.py", "stream.py", "predict.py", "cluster/__init__.py",
         "cluster/pipeline.py", "cluster/rounds.py", "cluster/collect.py", "scoring.py"]
# what only session.py (and the driver's plan, stages.py) asks of the registry and the backend classes
OPENING = {"in_process", "is_external", "usable_backend", "check_precision", "backend_options", "get_backend",
           "run_external", "load", "warm_up", "ExternalBackend", "describe_machine"}


def names_used(path):
    """Every attribute and name the module's code uses (docstrings and strings are not code); a
    ``load`` only of something called a backend (PIL's ``img.load()`` is no model), and a method
    ``warm_up`` of the opened model is its own."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute):
            if node.attr == "warm_up" or (node.attr == "load" and "backend" not in ast.unparse(node.value).lower()):
                continue
            found.add(node.attr)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.alias):
            found.add(node.name.rpartition(".")[2])
    return found


def test_no_flow_opens_a_model_or_checks_a_backend_itself():
    used = {flow: sorted(names_used(ROOT / "unet_infer" / flow) & OPENING) for flow in FLOWS}
    assert used == {flow: [] for flow in FLOWS}
    # the check can fail: session.py itself does all of it
    assert {"in_process", "usable_backend", "check_precision", "load", "warm_up"} <= names_used(
        ROOT / "unet_infer" / "session.py")


def flow_args(model, **changes):
    args = dict(model=str(model), backend=None, precision=None, nireq=None, torch_compile=False, cuda_graph=False)
    args.update(changes)
    return Namespace(**args)


def test_choose_refuses_what_cannot_run_here_in_one_line(tmp_path):
    with pytest.raises(UserError) as caught:
        session.choose(flow_args(tmp_path / "UNet_bs8.om"), "the streaming mode")
    assert str(caught.value).startswith("the streaming mode runs a backend in this process, not acl")
    with pytest.raises(UserError, match="precision int8 is not available on the torch backend"):
        session.choose(flow_args(tmp_path / "UNet.pth", precision="int8"), "predict")
    with pytest.raises(UserError, match="--nireq is an option of the openvino backend, not of onnxruntime"):
        session.choose(flow_args(tmp_path / "UNet.onnx", nireq=2), "predict")
    with pytest.raises(UserError, match="cannot tell the backend from the suffix '.txt'"):
        session.choose(flow_args(tmp_path / "UNet.txt"), "predict")
    choice = session.choose(flow_args(tmp_path / "UNet.xml", precision="bf16", nireq=2), "predict")
    assert (choice.name, choice.precision, choice.options["nireq"], choice.runs_in) == ("openvino", "bf16", 2, "bf16")
    assert session.choose(flow_args(tmp_path / "UNet.onnx"), "predict").runs_in == "fp32"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("model"))


def test_open_checks_the_input_warms_up_and_says_what_the_summary_holds(model):
    choice = session.choose(flow_args(model), "the stream")
    with pytest.raises(UserError) as caught:
        choice.open(batchsize=2, threads=1, size=SIZE, image_size=SIZE * 2, flow="the stream")
    assert str(caught.value) == (f"{model}: the model takes [(2, 3, {SIZE}, {SIZE})]; the stream feeds one "
                                 f"N x 3 x {SIZE * 2} x {SIZE * 2} input (see --size)")
    with choice.open(batchsize=2, threads=1, size=SIZE, image_size=SIZE, warmup=1) as opened:
        keys = opened.summary_keys("stream")
        assert list(keys) == ["backend", "precision", "machine", "mode", "model", "weights"]
        assert keys["model"] == str(Path(model).resolve()) and keys["weights"].startswith("unet.pth sha256:")
        assert opened.prefetch_depth(3) == 2 + 6  # one batch (no overlapped upload on the CPU) + 2 per decoder
        out = opened.backend.infer(np.zeros((2, 3, SIZE, SIZE), np.float32))
        assert out[0].shape == (2, 1, SIZE, SIZE)


def test_a_summary_refuses_a_key_it_does_not_document():
    with pytest.raises(ValueError, match=r"summary keys \['colour'\] are not documented"):
        summary.build_summary({}, {}, [1.0], [0.1], [0.1], 1, 1, extra={"colour": "red"})
    built = summary.build_summary({}, {}, [1.0], [0.1], [0.1], 1, 1, extra={"mode": "pure"})
    with pytest.raises(ValueError):
        summary.with_keys(built, pids=[1], colour="red")
    assert "pids" not in built  # refused whole, nothing half set
    assert [key for key, meaning in summary.KEYS.items() if not meaning.strip()] == []  # each says what it means


def test_the_runners_summaries_hold_documented_keys_only(model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for k in range(3):
        np.random.default_rng(k).random((3, SIZE, SIZE), dtype=np.float32).tofile(inputs / f"img_{k}.bin")
    argv = [f"--model={model}", f"--input={inputs}", f"--output={tmp_path / 'out'}", "--batchsize=2",
            f"--size={SIZE}", "--threads=1", "--quiet"]
    assert run_cli(bench_main, argv + ["--output_dirname=one"]) == 0
    assert run_cli(bench_main, argv + ["--output_dirname=two", "--device=0,1", "--threads=2"]) == 0
    allowed = set(summary.REQUIRED_KEYS) | set(summary.KEYS)
    for name in ("one_summary.json", "two_summary.json", "two_device0_summary.json"):
        data = json.loads((tmp_path / "out" / name).read_text())
        parts = [data] + data.get("devices", [])
        assert [sorted(set(part) - allowed) for part in parts] == [[]] * len(parts), name
        assert data["mode"] == "files" and data["model"] == str(Path(model).resolve())
    assert json.loads((tmp_path / "out" / "two_summary.json").read_text())["device_kind"] == "cpu shards"
