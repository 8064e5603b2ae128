"""``backend=auto``: the rule (``backends.default_backend``) on machines the tests make up (flags,
installed packages, GPU), the test hook that stands in for the CPU's flags (``UNET_INFER_TEST_CPU_FLAGS``)
in this process and in the processes it starts (the driver's plan, ``python3 -m unet_infer.backends``),
and the line that says what auto takes and why. Nothing here depends on the host's CPU."""

import os
import subprocess
import sys

import pytest

from unet_infer import backends, progress
from unet_infer.backends import auto_choice, cpu_flags, default_backend

AVX2 = {"avx", "avx2", "fma", "sse4_2"}                                 # AMD EPYC Zen 3
ZEN4 = AVX2 | {"avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"}      # AVX-512 VNNI/BF16, no AMX
AMX = ZEN4 | {"amx_tile", "amx_int8", "amx_bf16"}                       # Intel Xeon (Sapphire Rapids on)
EVERY = {"onnxruntime", "openvino", "torch"}


def flags_text(flags):
    return " ".join(sorted(flags))


@pytest.mark.parametrize("flags, installed, gpu, want", [
    (AMX, EVERY, False, "openvino"),
    (ZEN4, EVERY, False, "openvino"),
    ({"avx2", "avx512_vnni"}, EVERY, False, "openvino"),  # any one of FAST_CPU_FLAGS
    (AVX2, EVERY, False, "onnxruntime"),
    (set(), EVERY, False, "onnxruntime"),                 # ARM, or no /proc/cpuinfo
    (AMX, {"onnxruntime", "torch"}, False, "onnxruntime"),  # openvino not installed
    (AMX, EVERY, True, "onnxruntime"),                    # a CUDA/TensorRT provider beats every CPU path
])
def test_the_rule_on_each_kind_of_machine(flags, installed, gpu, want):
    assert default_backend(flags=flags, installed=installed, gpu=gpu) == want


def test_a_precision_the_choice_lacks_moves_to_the_first_installed_backend_that_has_it():
    assert default_backend("bf16", flags=AMX, installed=EVERY, gpu=False) == "openvino"
    assert default_backend("bf16", flags=AVX2, installed=EVERY, gpu=False) == "torch"
    assert default_backend("bf16", flags=AVX2, installed={"onnxruntime", "openvino"}, gpu=False) == "openvino"
    assert default_backend("fp16", flags=AMX, installed=EVERY, gpu=False) == "torch"
    assert default_backend("int8", flags=AVX2, installed=EVERY, gpu=False) == "onnxruntime"
    backend, precision, why = auto_choice("fp16", flags=AVX2, installed={"onnxruntime"}, gpu=False)
    assert (backend, precision) == ("onnxruntime", "fp16") and "no installed backend has fp16" in why[-1]


def test_the_reasons_name_the_facts_the_rule_read():
    backend, precision, why = auto_choice(flags=ZEN4, installed=EVERY, gpu=False)
    assert (backend, precision) == ("openvino", "fp32")
    assert why == ["CPU has avx512_vnni, avx512_bf16", "openvino installed", "no CUDA/TensorRT provider"]
    none = f"CPU has none of {', '.join(backends.FAST_CPU_FLAGS)}"
    assert auto_choice(flags=AVX2, installed={"onnxruntime"}, gpu=True) == (
        "onnxruntime", "fp32", [none, "openvino not installed", "a CUDA/TensorRT provider"])
    assert auto_choice("bf16", flags=AVX2, installed=EVERY, gpu=False) == (
        "torch", "bf16", [none, "openvino installed", "no CUDA/TensorRT provider",
                          "onnxruntime has no bf16, torch has"])


def test_the_test_hook_stands_in_for_the_cpu_and_only_when_set(tmp_path, monkeypatch, play_cpu):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "fma"}  # the first CPU's line
    assert cpu_flags(tmp_path / "none") == set()
    monkeypatch.delenv(backends.TEST_CPU_FLAGS_ENV, raising=False)
    host = cpu_flags()
    assert host == cpu_flags(backends.CPUINFO) and backends.forced_cpu_flags() is None
    play_cpu("  ")  # blank: the host's own
    assert cpu_flags() == host
    play_cpu("avx2, fma avx512_vnni")
    assert cpu_flags() == {"avx2", "fma", "avx512_vnni"} == backends.forced_cpu_flags()
    assert cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "fma"}  # a file asked for is read, hook or not
    assert auto_choice(installed=EVERY, gpu=False)[2][:2] == [
        f"CPU flags from {backends.TEST_CPU_FLAGS_ENV}, a test hook", "CPU has avx512_vnni"]


def plan_backend(work):
    proc = subprocess.run([sys.executable, "-m", "unet_infer.driver", "plan", f"workdir={work}", "backend=auto"],
                          capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())["BACKEND"]


def test_the_driver_plan_takes_the_played_cpu(tmp_path, play_cpu):
    """``python3 -m unet_infer.driver plan backend=auto`` (scripts/run_all.sh's) in a process of its own: the
    flags reach it through the environment and decide as the rule does for them."""
    for flags in (AVX2, AMX):
        play_cpu(flags_text(flags))
        assert plan_backend(tmp_path / "work") == default_backend(flags=flags)
    if "openvino" in backends.installed_backends() and default_backend(flags=AVX2) == "onnxruntime":
        assert default_backend(flags=AMX) == "openvino"  # so the two runs above told the machines apart


def test_the_backends_listing_says_what_auto_takes_and_why(play_cpu):
    installed = backends.installed_backends()
    for flags, says in ((AVX2, f"CPU has none of {', '.join(backends.FAST_CPU_FLAGS)}"),
                        (ZEN4, "CPU has avx512_vnni, avx512_bf16")):
        play_cpu(flags_text(flags))
        proc = subprocess.run([sys.executable, "-m", "unet_infer.backends"], capture_output=True, text=True,
                              env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.splitlines()[-1]
        want = default_backend(flags=flags)
        assert line.startswith(f"backend=auto: {want} fp32 (CPU flags from {backends.TEST_CPU_FLAGS_ENV}, a test hook; "
                               f"{says}; "), line
        assert ("openvino installed" if "openvino" in installed else "openvino not installed") in line


def test_the_listing_has_a_line_a_backend_and_the_auto_choice_for_a_precision(play_cpu, capsys):
    from unet_infer.backends.__main__ import main
    play_cpu(flags_text(AVX2))
    main(["--precision", "bf16"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == backends.names()
    assert lines[-1].startswith(f"backend=auto: {default_backend('bf16', flags=AVX2)} bf16 (")
    assert "; onnxruntime has no bf16, " in lines[-1]


# ---- what auto says, and the warning where a precision has no fast path here ----


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each slow-path warning is logged once per process: a test that looks for one starts afresh."""
    monkeypatch.setattr(backends, "_WARNED", set())
    monkeypatch.delenv("UNET_INFER_QUIET", raising=False)
    monkeypatch.setattr(progress, "_QUIET", False)  # a --quiet run earlier in this process set it


def test_a_slow_path_is_read_from_the_backends_declarations():
    for cls in backends.all_backends():
        assert set(cls.native_flags) <= set(cls.precisions), cls.name
    line = backends.slow_path("torch", "fp16", flags=AVX2, gpu=False)
    assert line.startswith("the torch backend runs fp16 on this CPU without native support (none of avx512_fp16, ")
    assert "slower than fp32" in line
    assert backends.slow_path("torch", "bf16", flags=AVX2, gpu=False) is not None
    assert backends.slow_path("torch", "fp16", flags=AMX | {"avx512_fp16"}, gpu=False) is None
    assert backends.slow_path("torch", "bf16", flags=ZEN4, gpu=False) is None   # avx512_bf16
    assert backends.slow_path("torch", "fp16", flags=AVX2, gpu=True) is None    # a GPU runs it
    assert backends.slow_path("torch", "fp32", flags=set(), gpu=False) is None
    assert backends.slow_path("onnxruntime", "int8", flags=AVX2, gpu=False) is None
    assert backends.slow_path("openvino", "bf16", flags=AVX2, gpu=False) is None  # it runs fp32 and says so


def test_auto_says_what_it_took_and_why_and_warns_of_a_slow_path(caplog, fresh_warnings):
    from unet_infer.progress import set_quiet
    caplog.set_level("INFO", logger="unet_infer.backends")
    assert default_backend("fp16", flags=AVX2, installed=EVERY, gpu=False) == "torch"
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    none = f"CPU has none of {', '.join(backends.FAST_CPU_FLAGS)}"
    assert said[0] == ("INFO", f"backend=auto: torch fp16 ({none}; openvino installed; no CUDA/TensorRT provider; "
                               f"onnxruntime has no fp16, torch has)")
    assert [level for level, _ in said[1:]] == ["WARNING"] and "without native support" in said[1][1]
    caplog.clear()
    default_backend("fp16", flags=AVX2, installed=EVERY, gpu=False)
    assert [r.levelname for r in caplog.records] == ["INFO"]  # the warning once per process
    caplog.clear()
    set_quiet(True)
    try:
        assert default_backend(flags=AMX, installed=EVERY, gpu=False) == "openvino"
    finally:
        set_quiet(False)
    assert caplog.records == []  # --quiet: no line; an fp32 choice: no warning


def test_a_flow_warns_when_its_backend_has_no_fast_path_here(tmp_path, caplog, play_cpu, monkeypatch, fresh_warnings):
    """Asked for by name (not through auto): the flows' one choice (session.choose) warns too."""
    from argparse import Namespace
    from unet_infer import session
    monkeypatch.setattr(backends.get_backend("torch"), "has_gpu", staticmethod(lambda: False))
    args = Namespace(model=str(tmp_path / "UNet.pth"), backend=None, precision="fp16", nireq=None,
                     torch_compile=False, cuda_graph=False)
    play_cpu(flags_text(AVX2))
    session.choose(args, "predict")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].startswith("the torch backend runs fp16 on this CPU without native")
    caplog.clear()
    monkeypatch.setattr(backends, "_WARNED", set())
    play_cpu(flags_text(AMX | {"avx512_fp16"}))
    session.choose(args, "predict")
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


def test_the_driver_plan_says_what_auto_took(tmp_path, play_cpu, monkeypatch):
    """What scripts/run_all.sh prints (the driver's plan's stderr; its stdout is the plan), and not with quiet=1."""
    play_cpu(flags_text(AVX2))
    monkeypatch.delenv("UNET_INFER_QUIET", raising=False)
    cmd = [sys.executable, "-m", "unet_infer.driver", "plan", f"workdir={tmp_path / 'work'}", "backend=auto", "bs=2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    want = default_backend(flags=AVX2)
    said = [line for line in proc.stderr.splitlines() if "backend=auto:" in line]
    assert len(said) == 1 and f"backend=auto: {want} fp32 (CPU flags from {backends.TEST_CPU_FLAGS_ENV}" in said[0]
    assert "backend=auto" not in proc.stdout
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, UNET_INFER_QUIET="1"))
    assert proc.returncode == 0 and "backend=auto" not in proc.stderr, proc.stderr
