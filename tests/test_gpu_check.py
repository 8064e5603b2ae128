"""scripts/gpu_check.sh: the CUDA paths in one bounded command, and its CUDA probe
(``python3 -m unet_infer.speed --cuda``).

This machine has no GPU: the steps are run with stand-ins (``PYTHON`` a script that plays python3
and logs its arguments, ``timeout`` on PATH a script that logs its own and runs the real one), so
that the order of the steps, their budgets and the report of a failed or timed-out step are seen
without CUDA. The probe itself is tested against fake torch modules.
"""

import os
import re
import shutil
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import pytest

from unet_infer import speed
from unet_infer.speed import configs as cfg
from unet_infer.speed.markdown import merge_section, render_section, section_heading, split_sections

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
GPU = "Fake GPU 9000"
SECTION = f"AMD EPYC, 16 cores, {GPU} · UNet w64 modelzoo, random weights (seed 0), 572x572 · 2026-01-02"
CPU_SECTION = "## AMD EPYC, 2 cores · UNet w64 modelzoo, random weights (seed 0), 572x572 · 2026-01-01"

# python3 as the steps call it: the probe, pytest, the driver's first stage command, the benchmark.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "python $*" >>"$GC_CALLS"
case "$1 $2" in
    "-m unet_infer.speed")
        if [[ "$3" == --cuda ]]; then
            [[ "${GC_PROBE:-}" == broken ]] && { echo "Traceback: something broke" >&2; exit 1; }
            echo "cuda: Fake GPU 9000 (torch 0.0, CUDA 0.0, 1 device)"
            [[ -n "${GC_MISSING:-}" ]] && echo "missing: $GC_MISSING"
            exit 0
        fi
        md=""; prev=""
        for arg in "$@"; do [[ "$prev" == --markdown ]] && md=$arg; prev=$arg; done
        if [[ "${GC_BENCH:-}" == clobber ]]; then echo "# nothing left" >"$md"; fi
        printf '\n## %s\n' "$GC_SECTION" >>"$md"
        echo "[benchmark] torch fp16 bs 8: 1234.50 images/s, p50 6.48 ms, p99 6.90 ms per batch, 0.81 ms/image, loop 100"
        echo "[benchmark] 1 row in $md (section '$GC_SECTION'), plot x.png"
        exit 0 ;;
    "-m pytest") sleep "${GC_PYTEST_SLEEP:-0}"; echo "7 passed, 1 skipped in 0.01s"; exit 0 ;;
    "-m unet_infer.stages") echo "error: the stand-in's stages fail" >&2; exit 2 ;;
esac
exit 99
"""
FAKE_TIMEOUT = """#!/usr/bin/env bash
echo "timeout $*" >>"$GC_CALLS"
exec {real} "$@"
"""


def run(*args, env=None, cwd=None, timeout=120):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture
def stand_in(tmp_path):
    """The environment of a run with stand-ins, its log of calls, and a markdown with a CPU section."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "timeout").write_text(FAKE_TIMEOUT.format(real=shutil.which("timeout")))
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(f"# UNet inference benchmarks\n\n{CPU_SECTION}\n\n| a |\n|---|\n")
    calls = tmp_path / "calls.txt"
    env = {"PYTHON": str(bin_dir / "python"), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "GC_CALLS": str(calls), "GC_SECTION": SECTION}
    return types.SimpleNamespace(env=env, calls=calls, markdown=markdown, work=tmp_path / "work", tmp=tmp_path)


def calls_of(stand_in):
    return stand_in.calls.read_text().splitlines() if stand_in.calls.exists() else []


def summary_line(stdout, step):
    return next(line for line in stdout.splitlines() if line.startswith(f"  {step}: "))


# ---- no CUDA: one line, nothing written ------------------------------------------------------------

@pytest.mark.skipif(cfg.cuda_status()[0], reason="this machine has CUDA: the script would run its steps")
def test_without_cuda_one_line_exit_0_and_nothing_written(tmp_path):
    before = sorted(tmp_path.iterdir())
    repo_md = REPO / "BENCHMARKS.md"
    stamp = repo_md.stat().st_mtime_ns if repo_md.exists() else None
    result = run(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"gpu_check: no CUDA here \(.+\); nothing to do\n", result.stdout), result.stdout
    assert cfg.cuda_status()[1] in result.stdout  # the probe's own reason
    assert sorted(tmp_path.iterdir()) == before  # no work folder, no log
    assert (repo_md.stat().st_mtime_ns if repo_md.exists() else None) == stamp


# ---- help and bad options --------------------------------------------------------------------------

def test_help_shows_the_budget_arithmetic_and_the_options():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    shares = {m[1]: int(m[2]) for m in re.finditer(r"^  (probe|tests|main|benchmark|spare|total) +(\d+) s ", text,
                                                   re.M)}
    assert set(shares) == {"probe", "tests", "main", "benchmark", "spare", "total"}, shares
    assert shares["total"] == 480 == sum(v for k, v in shares.items() if k != "total")
    assert f"= {shares['probe']} + {shares['tests']} + {shares['main']} + {shares['benchmark']} + " in text
    rows = re.search(r"max_seconds = \((\d+) - (\d+)\) x 5/6 / (\d+) = (\d+) s", " ".join(text.split()))
    assert rows and int(rows[1]) == shares["benchmark"]
    assert int(rows[4]) == (int(rows[1]) - int(rows[2])) * 5 // (6 * int(rows[3]))
    for option in ("budget=480", "workdir=", "steps=tests,main,benchmark", "tests=tests/test_torch_backend.py",
                   "bs=", "configs=", "markdown=", "examples:", "torch import", "CUDA init", "no export",
                   "477.6 GFLOP", "scripts/run_all.sh bs=8 backend=torch precision=fp16"):
        assert option in text, option


@pytest.mark.parametrize("arg, message", [
    ("colour=red", "unknown option 'colour=red'"),
    ("budget=soon", "budget must be a whole number of seconds, got 'soon'"),
    ("budget=8", "budget=8: at least 16 seconds"),
    ("steps=tests,lunch", "unknown step 'lunch'"),
    ("steps=", "steps= needs at least one of"),
    ("bs=1,,8", "bs must be a comma list of batch sizes"),
    ("tests=tests/no_such_test.py", "no_such_test.py not found"),
])
def test_bad_options_are_one_line_errors_before_anything(tmp_path, arg, message, stand_in):
    result = run(arg, f"workdir={stand_in.work}", env=stand_in.env)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert calls_of(stand_in) == [] and not stand_in.work.exists()  # not even the probe ran


# ---- the steps, with stand-ins ---------------------------------------------------------------------

def test_steps_run_in_order_with_their_budgets_and_a_failed_step_does_not_stop_the_next(stand_in):
    result = run(f"workdir={stand_in.work}", f"markdown={stand_in.markdown}", env=stand_in.env)
    assert result.returncode == 1, result.stdout + result.stderr  # main failed
    calls = calls_of(stand_in)
    assert calls[1].startswith("python -m unet_infer.speed --cuda --need ")  # the probe, first
    need = calls[1].split()[-1].split(",")
    assert set(need) >= {"pytest", "torch", "matplotlib"} and len(need) == len(set(need))
    timed = [c for c in calls if c.startswith("timeout ")]
    assert [c.split()[1:4] for c in timed] == [["-k", "5", "30"], ["-k", "5", "150"], ["-k", "5", "110"],
                                              ["-k", "5", "160"]]  # probe, tests, main, benchmark
    steps = [c for c in calls if c.startswith("timeout ")][1:]
    assert " -m pytest -q " in steps[0] and steps[0].endswith(str(REPO / "tests" / "test_torch_backend.py"))
    assert steps[1].endswith(f"scripts/run_all.sh bs=8 backend=torch precision=fp16 workdir={stand_in.work}/main "
                             "quiet=1")
    assert "scripts/benchmark.sh configs=torch:fp32,torch:fp16,torch:bf16 bs=1,8,32 rounds=1 loop=100 " \
           f"max_seconds=12 workdir={stand_in.work}/bench markdown={stand_in.markdown} quiet=1" in steps[2]
    order = [i for i, c in enumerate(calls) if re.match(r"python -m (pytest|unet_infer\.stages|unet_infer\.speed "
                                                         r"--batchsizes)", c)]
    assert [calls[i].split()[2] for i in order] == ["pytest", "unet_infer.stages", "unet_infer.speed"]
    out = result.stdout
    assert summary_line(out, "tests").startswith("  tests: passed in ") and "7 passed, 1 skipped" in out
    assert summary_line(out, "main").startswith("  main: failed (exit status 2)")
    assert "error: the stand-in's stages fail" in out  # the failed step's last lines
    assert summary_line(out, "benchmark").startswith("  benchmark: passed in ") and GPU in summary_line(out, "benchmark")
    assert "torch fp16 bs 8: 1234.50 images/s" in out
    text = stand_in.markdown.read_text()
    assert CPU_SECTION in text and f"## {SECTION}" in text
    log = (stand_in.work / "gpu_check.log").read_text()
    assert "summary (" in log and "main: failed" in log and "error: the stand-in's stages fail" in log
    assert {p.name for p in (stand_in.work / "steps").iterdir()} == {"tests.log", "main.log", "benchmark.log"}


def test_a_step_past_its_budget_is_stopped_and_the_later_steps_still_run(stand_in):
    start = time.monotonic()
    result = run("budget=16", f"workdir={stand_in.work}", f"markdown={stand_in.markdown}",
                 env={**stand_in.env, "GC_PYTEST_SLEEP": "60"})
    elapsed = time.monotonic() - start
    assert result.returncode == 1
    assert summary_line(result.stdout, "tests") == "  tests: timed out after 5 s"  # 150 x 16 / 480
    assert summary_line(result.stdout, "benchmark").startswith("  benchmark: passed")
    assert "max_seconds=1 " in next(c for c in calls_of(stand_in) if "benchmark.sh" in c)
    assert elapsed < 40


def test_missing_modules_skip_their_step_and_a_lost_section_fails_the_benchmark(stand_in):
    result = run("steps=benchmark,tests", f"workdir={stand_in.work}", f"markdown={stand_in.markdown}",
                 env={**stand_in.env, "GC_MISSING": "pytest, hypothesis", "GC_BENCH": "clobber"})
    assert result.returncode == 1
    assert "missing here: pytest, hypothesis" in result.stdout
    assert summary_line(result.stdout, "tests") == "  tests: not run: needs pytest"
    assert f"benchmark: failed: section '{CPU_SECTION[3:]}' of {stand_in.markdown} is gone" in result.stdout
    calls = calls_of(stand_in)
    assert not any("pytest" in c.split()[:4] or "run_all.sh" in c for c in calls)  # not run, not asked for
    bench = next(c for c in calls if "benchmark.sh" in c)
    assert bench.split()[1:4] == ["-k", "5", str(420 * 160 // 310)]  # main's share went to the steps asked for
    assert "max_seconds=18 " in bench  # (216 - 20) x 5 / 6 / 9 rows
    assert "  main: " not in result.stdout


def test_a_section_that_does_not_name_the_gpu_fails_the_benchmark(stand_in):
    env = {**stand_in.env, "GC_SECTION": "AMD EPYC, 16 cores · UNet · 2026-01-02"}
    result = run("steps=benchmark", f"workdir={stand_in.work}", f"markdown={stand_in.markdown}", env=env)
    assert result.returncode == 1
    assert f"does not name the GPU ({GPU})" in summary_line(result.stdout, "benchmark")


def test_a_probe_that_breaks_is_an_error_and_nothing_is_written(stand_in):
    result = run(f"workdir={stand_in.work}", env={**stand_in.env, "GC_PROBE": "broken"})
    assert result.returncode == 1 and result.stdout == ""
    assert "cannot tell whether there is a CUDA GPU" in result.stderr and "something broke" in result.stderr
    assert not stand_in.work.exists()


# ---- the GPU section of BENCHMARKS.md --------------------------------------------------------------

def test_a_gpu_section_is_headed_by_the_gpu_and_the_date_and_keeps_the_cpu_sections():
    old = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    _, sections = split_sections(old)
    heading = section_heading("AMD EPYC 9R14, 16 cores, NVIDIA H200", "UNet w64 modelzoo", "2026-12-03")
    merged = merge_section(old, render_section(heading, [], "UNet", ["scripts/gpu_check.sh"], "Python"))
    headings = [s.splitlines()[0] for s in split_sections(merged)[1]]
    assert headings == [s.splitlines()[0] for s in sections] + [heading]
    assert "NVIDIA H200" in heading and heading.endswith("· 2026-12-03")


# ---- the probe -------------------------------------------------------------------------------------

def fake_torch(cuda_version="12.8", count=1, warning=None, fails=None):
    def is_available():
        if warning:
            warnings.warn(warning)
        if fails:
            raise RuntimeError(fails)
        return count > 0
    cuda = types.SimpleNamespace(is_available=is_available, device_count=lambda: count,
                                 get_device_name=lambda i: "Fake H200")
    return types.SimpleNamespace(__version__="9.9", version=types.SimpleNamespace(cuda=cuda_version), cuda=cuda)


@pytest.mark.parametrize("module, ok, text", [
    (None, False, "torch is not installed"),
    (fake_torch(cuda_version=None), False, "torch 9.9 is a CPU-only build"),
    (fake_torch(count=0, warning="CUDA initialization: the driver is too old"), False,
     "torch 9.9 (CUDA 12.8) sees no CUDA device: CUDA initialization: the driver is too old"),
    (fake_torch(fails="no driver"), False, "torch 9.9 (CUDA 12.8) sees no CUDA device: RuntimeError: no driver"),
    (fake_torch(count=2), True, "Fake H200 (torch 9.9, CUDA 12.8, 2 devices)"),
])
def test_cuda_status_says_why_not(monkeypatch, module, ok, text):
    monkeypatch.setitem(sys.modules, "torch", module)
    assert cfg.cuda_status() == (ok, text)


def test_the_probe_cli_prints_one_line_and_the_missing_modules(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    assert speed.main(["--cuda", "--need", "pytest,no_such_module_here,numpy"]) == 0
    assert capsys.readouterr().out == "cuda: Fake H200 (torch 9.9, CUDA 12.8, 1 device)\nmissing: no_such_module_here\n"
    monkeypatch.setitem(sys.modules, "torch", None)
    assert speed.main(["--cuda"]) == 1
    assert capsys.readouterr().out == "no CUDA here (torch is not installed)\n"
    with pytest.raises(SystemExit) as exc:
        speed.main(["--need", "pytest"])
    assert exc.value.code == 2 and "--need goes with --cuda" in capsys.readouterr().err
