"""The UNet, its checkpoint layouts, the ONNX export with its parity check, and onnxsim.sh."""

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import unet_pth2onnx
from unet_infer.cli import UserError, run_cli
from unet_infer.export import INPUT_NAME, OUTPUT_NAME, pth_to_onnx, relative_error
from unet_infer.model import UNet, count_macs, count_parameters, detect_layout, load_unet

ROOT = Path(__file__).resolve().parents[1]
SIZE = 48

LAYOUTS = {
    # name: (constructor kwargs, extra state_dict entries)
    "modelzoo": (dict(n_classes=1, bilinear=False, bias=True), {}),
    "master": (dict(n_classes=2, bilinear=False, bias=False), {"mask_values": [0, 1]}),
    "bilinear": (dict(n_classes=1, bilinear=True, bias=True), {}),
}


def save_checkpoint(path, width=8, layout="modelzoo", seed=0):
    kwargs, extra = LAYOUTS[layout]
    torch.manual_seed(seed)
    model = UNet(width=width, **kwargs)
    # Non-trivial batch-norm statistics, so the export really has to fold them.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    sd = dict(model.state_dict())
    sd.update(extra)
    torch.save(sd, path)
    return model.eval()


def test_standard_model_matches_the_modelzoo_numbers():
    model = UNet()
    assert len(model.state_dict()) == 136
    assert round(count_parameters(model) / 1e6, 1) == 31.0
    assert round(2 * count_macs(model, 572) / 1e9, 1) == 477.6
    assert len(UNet(n_classes=2, bias=False).state_dict()) == 118


@pytest.mark.parametrize("size", [572, 64, 37])
def test_output_has_the_input_size(size):
    with torch.no_grad():
        out = UNet(width=2).eval()(torch.zeros(1, 3, size, size))
    assert out.shape == (1, 1, size, size)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layout_is_read_from_the_state_dict(tmp_path, layout):
    pth = tmp_path / "m.pth"
    ref = save_checkpoint(pth, width=8, layout=layout)
    model, found = load_unet(pth)
    assert found.name == layout
    assert found.width == 8
    assert found.n_classes == LAYOUTS[layout][0]["n_classes"]
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_export_matches_pytorch_on_every_layout(tmp_path, layout):
    pth, onnx_path = tmp_path / "m.pth", tmp_path / "m.onnx"
    ref = save_checkpoint(pth, width=8, layout=layout)
    info = pth_to_onnx(pth, onnx_path, size=SIZE)
    assert info["layout"] == layout and info["relative_error"] <= 1e-4

    model = onnx.load(str(onnx_path))
    assert model.opset_import[0].version == 11
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_param")

    # The batch axis really is dynamic: run 3 images at once and compare with PyTorch.
    x = np.random.default_rng(1).random((3, 3, SIZE, SIZE), dtype=np.float32)
    got = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    assert got.shape == (3, info["classes"], SIZE, SIZE)
    assert relative_error(got, want) < 1e-4


def test_parity_failure_fails_the_export_and_leaves_nothing(tmp_path):
    pth, onnx_path = tmp_path / "m.pth", tmp_path / "m.onnx"
    save_checkpoint(pth, width=4)
    with pytest.raises(UserError, match="relative error") as failure:
        pth_to_onnx(pth, onnx_path, size=32, rtol=0.0)
    assert str(failure.value).startswith(f"{onnx_path}: ")  # the file asked for, not a temporary one
    assert list(tmp_path.iterdir()) == [pth]


def test_stage_scripts_run_from_another_folder(tmp_path):
    """The guide moves unet_pth2onnx.py into ./Pytorch_UNet: the installed package is found from there."""
    moved = tmp_path / "Pytorch_UNet"
    moved.mkdir()
    (moved / "unet_pth2onnx.py").write_bytes((ROOT / "unet_pth2onnx.py").read_bytes())
    pth = tmp_path / "m.pth"
    save_checkpoint(pth, width=4)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, str(moved / "unet_pth2onnx.py"), str(pth), str(tmp_path / "m.onnx"),
                           "--size", "32"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "m.onnx").is_file()


def test_cli_prints_what_it_found(tmp_path, capsys):
    pth, onnx_path = tmp_path / "m.pth", tmp_path / "m.onnx"
    save_checkpoint(pth, width=4, layout="master")
    assert run_cli(unet_pth2onnx.main, [str(pth), str(onnx_path), "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "layout master" in out and "2 classes" in out and "width 4" in out and "GFLOP" in out
    assert onnx_path.is_file()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def _error(capsys, argv):
    status = run_cli(unet_pth2onnx.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err and err[-1].startswith("error: ") and "Traceback" not in "\n".join(err)
    return err[-1]


def test_missing_checkpoint(tmp_path, capsys):
    msg = _error(capsys, [str(tmp_path / "nope.pth"), str(tmp_path / "m.onnx")])
    assert "nope.pth" in msg and "not found" in msg


def test_not_a_state_dict(tmp_path, capsys):
    pth = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], pth)
    assert "not a state_dict" in _error(capsys, [str(pth), str(tmp_path / "m.onnx")])


def test_foreign_state_dict_names_keys(tmp_path, capsys):
    pth = tmp_path / "foreign.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), pth)
    msg = _error(capsys, [str(pth), str(tmp_path / "m.onnx")])
    assert msg.startswith(f"error: {pth}: not a UNet state_dict")  # the file is named
    assert "missing keys" in msg and "inc.double_conv.0.weight" in msg
    assert "2 unexpected keys" in msg and "weight" in msg


def test_partial_state_dict_names_missing_keys(tmp_path, capsys):
    pth = tmp_path / "partial.pth"
    sd = UNet(width=4).state_dict()
    del sd["down2.maxpool_conv.1.double_conv.0.weight"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, pth)
    msg = _error(capsys, [str(pth), str(tmp_path / "m.onnx")])
    assert "down2.maxpool_conv.1.double_conv.0.weight" in msg and "extra.weight" in msg


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    pth = tmp_path / "evil.pth"
    with open(pth, "wb") as fh:
        pickle.dump({"inc.double_conv.0.weight": _RunsCode()}, fh)
    assert "refused" in _error(capsys, [str(pth), str(tmp_path / "m.onnx")])
    pth2 = tmp_path / "evil2.pth"
    torch.save({"x": _RunsCode()}, pth2)
    msg = _error(capsys, [str(pth2), str(tmp_path / "m.onnx")])
    assert msg == (f"error: {pth2}: refused: the checkpoint holds objects or code (posix.system) that a "
                   f"weights-only load does not run; save it again as a plain state_dict of tensors")
    assert "\x1b" not in msg


def test_text_and_truncated_files_say_what_they_are(tmp_path, capsys):
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    assert _error(capsys, [str(text), str(tmp_path / "m.onnx")]) == (
        f"error: {text}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle)")
    whole = tmp_path / "whole.pth"
    save_checkpoint(whole, width=4)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole.read_bytes()[:3000])
    assert _error(capsys, [str(cut), str(tmp_path / "m.onnx")]) == (
        f"error: {cut}: not a readable PyTorch checkpoint (a truncated or damaged zip archive)")


def test_output_equal_to_the_checkpoint_is_refused_and_the_checkpoint_kept(tmp_path, capsys):
    pth = tmp_path / "same.pth"
    save_checkpoint(pth, width=4)
    before = pth.read_bytes()
    assert "must not overwrite the checkpoint" in _error(capsys, [str(pth), str(pth)])
    assert pth.read_bytes() == before


@pytest.mark.parametrize("size", ["0", "-1", "3", "15"])
def test_sizes_below_16_are_refused_in_one_line(tmp_path, capsys, size):
    pth = tmp_path / "m.pth"
    save_checkpoint(pth, width=4)
    assert run_cli(unet_pth2onnx.main, [str(pth), str(tmp_path / "m.onnx"), "--size", size]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --size") and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("size", [16, 23, 31])
def test_small_sizes_from_16_export(tmp_path, size):
    pth = tmp_path / "m.pth"
    save_checkpoint(pth, width=4)
    info = pth_to_onnx(pth, tmp_path / "m.onnx", size=size)
    assert info["size"] == size and info["relative_error"] <= 1e-4


def test_wrong_number_of_input_channels(tmp_path, capsys):
    pth = tmp_path / "grey.pth"
    torch.save(UNet(n_channels=1, width=4).state_dict(), pth)
    assert "1 input channels" in _error(capsys, [str(pth), str(tmp_path / "m.onnx")])


def test_random_bytes_as_checkpoint(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(5):
        pth = tmp_path / f"junk{i}.pth"
        pth.write_bytes(rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes())
        assert "junk" in _error(capsys, [str(pth), str(tmp_path / "m.onnx")])
    assert not (tmp_path / "m.onnx").exists()


def test_detect_layout_rejects_non_tensors():
    with pytest.raises(UserError):
        detect_layout({"inc.double_conv.0.weight": 1, "outc.conv.weight": 2})


def _onnxsim(*args):
    return subprocess.run(["bash", str(ROOT / "scripts" / "onnxsim.sh"), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable})


def test_onnxsim_keeps_the_batch_dynamic_and_the_outputs(tmp_path):
    pth, raw, sim = tmp_path / "m.pth", tmp_path / "m.onnx", tmp_path / "sim.onnx"
    save_checkpoint(pth, width=4)
    pth_to_onnx(pth, raw, size=32)
    proc = _onnxsim(raw, sim, 32)
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(str(sim))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_param")
    assert [v.name for v in model.graph.input] == [INPUT_NAME] and [v.name for v in model.graph.output] == [OUTPUT_NAME]
    assert len(model.graph.node) < len(onnx.load(str(raw)).graph.node)
    x = np.random.default_rng(2).random((2, 3, 32, 32), dtype=np.float32)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    assert relative_error(run(sim), run(raw)) < 1e-5


def test_onnxsim_failure_fails_and_writes_nothing(tmp_path):
    bad, out = tmp_path / "bad.onnx", tmp_path / "out.onnx"
    bad.write_bytes(b"not a model")
    proc = _onnxsim(bad, out, 32)
    assert proc.returncode != 0 and "error:" in proc.stderr
    assert not out.exists()
    assert _onnxsim(tmp_path / "missing.onnx", out).returncode == 2
    assert "usage:" in _onnxsim("--help").stdout


def test_simplify_refuses_to_overwrite_its_input(tmp_path):
    pth, exported = tmp_path / "m.pth", tmp_path / "m.onnx"
    save_checkpoint(pth, width=4)
    pth_to_onnx(pth, exported, size=32, check=False)
    before = exported.read_bytes()
    proc = _onnxsim(exported, exported, 32)
    assert proc.returncode == 2 and "must not overwrite the source model" in proc.stderr
    assert exported.read_bytes() == before


def test_the_simplified_model_follows_the_umask(tmp_path):
    """Written as every other output is: mode 0644 under umask 022 (not mkstemp's 0600)."""
    from unet_infer.simplify import simplify
    pth, exported, sim = tmp_path / "m.pth", tmp_path / "m.onnx", tmp_path / "sim.onnx"
    save_checkpoint(pth, width=4)
    pth_to_onnx(pth, exported, size=32, check=False)
    old = os.umask(0o022)
    try:
        simplify(exported, sim, 32)
    finally:
        os.umask(old)
    assert oct(sim.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
