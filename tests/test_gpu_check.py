"""scripts/gpu_check.sh (python3 -m unet_infer.gpu_check): the CUDA paths in one bounded command, its
verdicts read from the files the steps write, and its CUDA probe (``python3 -m unet_infer.speed --cuda``).

This machine has no GPU, so the CUDA parts are skipped: the probe's answer is a stand-in that names
this CPU as the device, the main job runs torch fp32 on a tiny data set and checkpoint, and the
benchmark a width-4 UNet at 32 x 32. Everything else is real: the three steps run as processes
under their budgets, and their verdicts and figures come from what they wrote (the JUnit report,
result_bs2.json and the run summary, the section of the markdown), checked here against what
the steps printed themselves. The probe is tested against fake torch modules.
"""

import contextlib
import io
import json
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
import torch

from tiny_unet import tiny_unet
from unet_infer import cli, gpu_check, speed
from unet_infer.machine import cpu_model
from unet_infer.speed import merge_section, render_section, section_heading, split_sections

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
CPU_SECTION = "## AMD EPYC, 2 cores · UNet w64 modelzoo, random weights (seed 0), 572x572 · 2026-01-01"
TESTS = ("tests/test_torch_backend.py::test_compile_modes,"  # one that runs here, one marked cuda
         "tests/test_torch_backend.py::test_cuda_uploads_ahead_overlap_and_keep_each_batch")


def shim(*args, cwd=None):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def on_the_cpu(patch, gpu, data, weights):
    """The CUDA parts skipped: the probe answers ``gpu``, the main job and the benchmark are sized for
    this CPU."""
    patch.setattr(gpu_check, "probe", lambda cmd, seconds, env: f"{gpu} (a stand-in for the probe's GPU)")
    patch.setattr(gpu_check, "MAIN", ["bs=2", "backend=torch", "precision=fp32", "size=32", "loop=1",
                                      f"data={data}", f"weights={weights}"])
    patch.setattr(gpu_check, "BENCH", ["rounds=1", "loop=2", "width=4", "size=32"])


def check(*args):
    """``(exit status, stdout)`` of the check run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.run_cli(gpu_check.main, list(args))
    return status, out.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from conftest import _make_carvana
    root = tmp_path_factory.mktemp("tiny")
    weights = root / "tiny.pth"
    torch.save(tiny_unet().state_dict(), weights)
    return types.SimpleNamespace(root=root, data=_make_carvana(root / "carvana").root, weights=weights)


@pytest.fixture(scope="module")
def checked(tiny):
    """One run of every step on this CPU, shared by the tests that read what it wrote."""
    markdown = tiny.root / "BENCHMARKS.md"
    markdown.write_text(f"# UNet inference benchmarks\n\n{CPU_SECTION}\n\n| a |\n|---|\n")
    work = tiny.root / "work"
    with pytest.MonkeyPatch.context() as patch:
        on_the_cpu(patch, cpu_model(), tiny.data, tiny.weights)
        status, out = check(f"workdir={work}", f"markdown={markdown}", f"tests={TESTS}", "bs=1,2",
                            "configs=torch:fp32")
    return types.SimpleNamespace(status=status, out=out, work=work, markdown=markdown, gpu=cpu_model())


def summary_line(stdout, step):
    return next(line for line in stdout.splitlines() if line.startswith(f"  {step}: "))


# ---- no CUDA: one line, nothing written ------------------------------------------------------------

@pytest.mark.skipif(speed.cuda_status()[0], reason="this machine has CUDA: the script would run its steps")
def test_without_cuda_one_line_exit_0_and_nothing_written(tmp_path):
    repo_md = REPO / "BENCHMARKS.md"
    stamp = repo_md.stat().st_mtime_ns if repo_md.exists() else None
    result = shim(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"gpu_check: no CUDA here \(.+\); nothing to do\n", result.stdout), result.stdout
    assert speed.cuda_status()[1] in result.stdout  # the probe's own reason
    assert list(tmp_path.iterdir()) == []  # no work folder, no log
    assert (repo_md.stat().st_mtime_ns if repo_md.exists() else None) == stamp


# ---- help, options and budgets ---------------------------------------------------------------------

def test_help_shows_the_budget_arithmetic_and_the_options():
    result = shim("--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    shares = {m[1]: int(m[2]) for m in re.finditer(r"\b(probe|tests|main|benchmark|spare) (\d+) s \(", text)}
    assert shares == gpu_check.parse([])[2] and sum(shares.values()) == 480, shares  # what the run uses
    rows = re.search(r"(\d+) rows .* max_seconds=(\d+) each", text)
    assert rows and int(rows[2]) == gpu_check.max_seconds(shares["benchmark"], int(rows[1]))
    for option in ("budget=480", "workdir=", "steps=tests,main,benchmark", "tests=tests/test_torch_backend.py",
                   "bs=", "configs=", "markdown=", "examples:", "torch import", "CUDA init", "no export",
                   "477.6 GFLOP", "scripts/run_all.sh bs=8 backend=torch precision=fp16"):
        assert option in result.stdout, option


@pytest.mark.parametrize("args, budgets", [
    ([], {"probe": 30, "spare": 30, "tests": 150, "main": 110, "benchmark": 160}),
    (["budget=16"], {"probe": 1, "spare": 1, "tests": 5, "main": 3, "benchmark": 5}),  # 150 x 14 / 420
    (["steps=benchmark,tests"], {"probe": 30, "spare": 30, "tests": 420 * 150 // 310, "benchmark": 420 * 160 // 310}),
])
def test_the_steps_share_the_budget_by_their_shares(args, budgets):
    _, steps, got = gpu_check.parse(args)
    assert got == budgets and steps == [s for s in gpu_check.STEPS if s in budgets]  # always in this order
    assert gpu_check.max_seconds(216, 9) == 18 and gpu_check.max_seconds(5, 9) == 1  # (216 - 20) x 5 / 6 / 9


@pytest.mark.parametrize("arg, message", [
    ("colour=red", "unknown option 'colour=red' (options are key=value; see scripts/gpu_check.sh --help)"),
    ("budget=soon", "budget must be a whole number of seconds, got 'soon'"),
    ("budget=8", "budget=8: at least 16 seconds"),
    ("steps=tests,lunch", "steps must be a comma list of tests, main, benchmark, got 'tests,lunch'"),
    ("steps=", "steps= needs a comma list of tests, main, benchmark"),
    ("bs=1,,8", "bs must be a comma list of batch sizes, got '1,,8'"),
    ("configs=torch", "configs must be a comma list of backend:precision, got 'torch'"),
    ("tests=tests/no_such_test.py", "no_such_test.py not found"),
    ("markdown=", "markdown= needs a markdown file"),
])
def test_bad_options_are_one_line_errors_before_anything(tmp_path, monkeypatch, capsys, arg, message):
    monkeypatch.setattr(gpu_check, "probe", lambda *a: pytest.fail("the probe ran"))
    assert cli.run_cli(gpu_check.main, [arg, f"workdir={tmp_path / 'work'}"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "work").exists()


# ---- the steps, on this CPU ------------------------------------------------------------------------

def test_every_step_runs_in_order_and_passes_by_its_files(checked):
    assert checked.status == 0, checked.out
    said = [line for line in checked.out.splitlines() if re.match(r"\[gpu_check\] (tests|main|benchmark): ", line)]
    assert [line.split()[1] for line in said] == ["tests:", "tests:", "main:", "main:", "benchmark:", "benchmark:"]
    assert " -m pytest -q -n 0 --durations=5 " in said[0] and said[0].endswith("(budget 150 s)")
    assert "scripts/run_all.sh bs=2 backend=torch precision=fp32 " in said[2] and said[2].endswith("(budget 110 s)")
    assert "configs=torch:fp32 bs=1,2 rounds=1 loop=2 width=4 size=32 max_seconds=58 " in said[4]  # 2 rows
    assert checked.out.splitlines()[-1] == "[gpu_check] every step passed"
    log = (checked.work / "gpu_check.log").read_text()
    assert all(line in log for line in said) and "---- main output (" in log and "every step passed" in log
    assert {p.name for p in (checked.work / "steps").iterdir()} == {"tests.log", "tests.xml", "main.log",
                                                                     "benchmark.log"}


def test_the_figures_read_from_the_files_are_what_the_steps_printed(checked):
    steps = checked.work / "steps"
    tests = summary_line(checked.out, "tests")
    assert re.fullmatch(r"  tests: passed in \d+ s; 1 passed, 1 skipped in [0-9.]+s", tests), tests
    assert "1 passed, 1 skipped" in (steps / "tests.log").read_text().splitlines()[-1]  # pytest's own count
    closing = [line for line in (steps / "main.log").read_text().splitlines() if line.startswith("IoU ")]
    assert summary_line(checked.out, "main").endswith(f"; {closing[-1]}")  # the driver's closing line
    result = json.loads((checked.work / "main" / "result_bs2.json").read_text())
    assert closing[-1].startswith(f"IoU {result['mean_iou']:.6f} ")
    bench = summary_line(checked.out, "benchmark")
    assert bench.startswith("  benchmark: passed in ") and f"in {checked.markdown}" in bench
    heading = re.search(r"section '(.+)' in ", bench)[1]
    assert checked.gpu in heading and f"## {heading}" in checked.markdown.read_text()
    printed = [line.split("] ", 1)[1] for line in (steps / "benchmark.log").read_text().splitlines()
               if re.match(r"\[benchmark\] torch fp32 bs \d: ", line)]
    lines = checked.out.splitlines()
    rows = lines[lines.index(bench) + 1:lines.index(bench) + 3]
    assert len(printed) == len(rows) == 2 and all(p.startswith(r.strip()) for p, r in zip(printed, rows)), (printed, rows)
    assert CPU_SECTION in checked.markdown.read_text()  # the other section kept


def test_a_test_report_with_a_failure_or_no_test_fails_the_tests_step(tmp_path):
    (tmp_path / "test_one.py").write_text("def test_fine():\n    pass\n\ndef test_broken():\n    assert 0\n")
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
                    str(tmp_path / "test_one.py")], capture_output=True, cwd=tmp_path, timeout=120)
    problem, figures, _ = gpu_check.check_tests(report)
    assert figures.startswith("1 passed, 1 failed in ") and problem == f"the report counts {figures}"
    report.write_text(report.read_text().replace('failures="1"', 'failures="0"').replace('tests="2"', 'tests="1"'))
    assert gpu_check.check_tests(report)[0] is None  # the count, not the exit status, decides here
    problem = gpu_check.check_tests(tmp_path / "none.xml")[0]
    assert problem.startswith("no test report (") and "none.xml" in problem


def test_a_main_job_not_scored_as_asked_or_not_on_the_gpu_fails(checked, tmp_path):
    work = tmp_path / "main"
    shutil.copytree(checked.work / "main", work, symlinks=True)
    assert gpu_check.MAIN == ["bs=8", "backend=torch", "precision=fp16"]  # what the check asks on the GPU
    asked = ["bs=2", "backend=torch", "precision=fp32"]
    assert gpu_check.check_main(work, asked, checked.gpu)[0] is None
    problem, figures, _ = gpu_check.check_main(work, asked, "NVIDIA H100 80GB HBM3")
    assert problem.startswith(f"{work / 'result' / 'bs2_summary.json'} ran on '") and "not the GPU (NVIDIA" in problem
    assert figures.startswith("IoU ")
    result = json.loads((work / "result_bs2.json").read_text())
    result["provenance"]["precision"] = "bf16"
    (work / "result_bs2.json").write_text(json.dumps(result))
    assert gpu_check.check_main(work, asked, checked.gpu)[0] == f"{work / 'result_bs2.json'} was scored by torch bf16"
    (work / "result_bs2.json").unlink()
    assert gpu_check.check_main(work, asked, checked.gpu)[0].startswith("no result (")


def test_a_benchmark_section_without_the_gpu_a_row_or_an_old_section_fails(checked):
    after = checked.markdown.read_text()
    before = f"# UNet inference benchmarks\n\n{CPU_SECTION}\n\n| a |\n|---|\n"
    ok = gpu_check.check_benchmark(checked.markdown, before, checked.gpu, ["torch:fp32"], ["1", "2"])
    assert ok[0] is None and checked.gpu in ok[1] and len(ok[2]) == 2
    problem = gpu_check.check_benchmark(checked.markdown, before, "NVIDIA H200", ["torch:fp32"], ["1", "2"])[0]
    assert problem.endswith(f"does not name the GPU (NVIDIA H200)")
    problem = gpu_check.check_benchmark(checked.markdown, before, checked.gpu, ["torch:fp32", "torch:bf16"], ["2"])[0]
    assert problem.endswith("has no row for torch bf16 bs 2")
    assert gpu_check.check_benchmark(checked.markdown, after, checked.gpu, ["torch:fp32"], ["1"])[0] == \
        "no section was written"
    lost = "## Intel Xeon, 2 cores · UNet w64 · 2026-02-02"
    problem = gpu_check.check_benchmark(checked.markdown, f"{before}\n{lost}\n\n| b |\n", checked.gpu, ["torch:fp32"],
                                        ["1"])[0]
    assert problem == f"section '{lost[3:]}' of {checked.markdown} is gone"


def test_the_repository_benchmarks_md_takes_a_gpu_section_and_keeps_the_others(tmp_path):
    old = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    heading = section_heading("AMD EPYC 9R14, 16 cores, NVIDIA H200", "UNet w64 modelzoo", "2026-12-03")
    row = {"backend": "torch", "precision": "fp16", "batchsize": 8, "fps": 900.0, "p50": 8.9, "p99": 9.1,
           "ms_per_image": 1.1, "loop": 100, "machine": "AMD EPYC 9R14, 16 cores, NVIDIA H200", "date": "2026-12-03"}
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text(merge_section(old, render_section(heading, [row], "UNet", ["scripts/gpu_check.sh"], "Python")))
    problem, got, rows = gpu_check.check_benchmark(markdown, old, "NVIDIA H200", ["torch:fp16"], ["8"])
    assert problem is None and got == f"section '{heading[3:]}' in {markdown}", problem
    assert rows == ["torch fp16 bs 8: 900.00 images/s, p50 8.90 ms, p99 9.10 ms per batch, 1.10 ms/image, loop 100"]
    assert len(split_sections(markdown.read_text())[1]) == len(split_sections(old)[1]) + 1


def test_a_failed_step_shows_its_last_lines_and_the_later_steps_still_run(tiny, tmp_path, monkeypatch):
    on_the_cpu(monkeypatch, cpu_model(), tiny.data, tiny.weights)
    hide = tmp_path / "hide"  # pytest not installed, as far as the steps can tell
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['pytest'] = None\n")
    monkeypatch.setenv("PYTHONPATH", str(hide))
    monkeypatch.setattr(gpu_check, "MAIN", ["bs=2", "backend=tpu", "precision=fp32"])  # a real error, at once
    status, out = check("steps=tests,main", f"workdir={tmp_path / 'work'}")
    assert status == 1 and out.splitlines()[-1].startswith("[gpu_check] some steps did not pass")
    assert summary_line(out, "tests").startswith("  tests: failed (exit status 1) after ")
    assert summary_line(out, "main").startswith("  main: failed (exit status 2) after ")
    lines = out.splitlines()  # under each failed step's verdict, its last lines
    tests_said = lines.index("[gpu_check] " + summary_line(out, "tests").strip())
    assert lines[tests_said + 1].startswith("    ") and "No module named pytest" in lines[tests_said + 1], out
    main_said = lines.index("[gpu_check] " + summary_line(out, "main").strip())
    assert lines[main_said + 1].startswith("    error: unknown backend 'tpu'"), out


def test_steps_that_exit_0_but_wrote_nothing_fail(tiny, tmp_path, monkeypatch):
    """The verdict is the files': a step whose command ends well but leaves no report, result or
    section did not pass."""
    on_the_cpu(monkeypatch, cpu_model(), tiny.data, tiny.weights)
    monkeypatch.setattr(gpu_check, "run", lambda cmd, seconds, out, env: out.write_text("fine\n") and 0)
    (tmp_path / "B.md").write_text(f"# UNet inference benchmarks\n\n{CPU_SECTION}\n\n| a |\n|---|\n")
    status, out = check(f"workdir={tmp_path / 'work'}", f"markdown={tmp_path / 'B.md'}")
    assert status == 1
    assert summary_line(out, "tests").startswith(f"  tests: failed: no test report ({tmp_path / 'work'}")
    assert summary_line(out, "main").startswith("  main: failed: no result (")
    assert summary_line(out, "benchmark") == "  benchmark: failed: no section was written"


def test_a_step_past_its_budget_is_stopped_and_the_later_steps_still_run(tiny, tmp_path, monkeypatch):
    on_the_cpu(monkeypatch, cpu_model(), tiny.data, tiny.weights)
    hangs = tmp_path / "python"  # the steps' python3 (run_all.sh's and benchmark.sh's $PYTHON) hangs
    hangs.write_text("#!/usr/bin/env bash\necho 'a stage that hangs'\nsleep 60\n")
    hangs.chmod(0o755)
    monkeypatch.setenv("PYTHON", str(hangs))
    parse = gpu_check.parse
    monkeypatch.setattr(gpu_check, "parse", lambda argv: (*parse(argv)[:2], {**parse(argv)[2], "main": 1,
                                                                               "benchmark": 2}))
    start = time.monotonic()
    status, out = check("steps=main,benchmark", f"workdir={tmp_path / 'work'}", f"markdown={tmp_path / 'B.md'}")
    assert status == 1 and time.monotonic() - start < 30
    assert summary_line(out, "main") == "  main: timed out after 1 s"
    assert summary_line(out, "benchmark") == "  benchmark: timed out after 2 s"
    lines = out.splitlines()  # each stopped step's last lines: the driver's TERM trap, the benchmark's stage
    assert lines[lines.index("[gpu_check] main: timed out after 1 s") + 1] == "    error: interrupted", out
    assert lines[lines.index("[gpu_check] benchmark: timed out after 2 s") + 2] == "    a stage that hangs", out


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie is gone
    except OSError:
        return False


def test_a_step_is_stopped_with_its_process_group_even_when_it_ignores_term(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "KILL_AFTER", 1)
    pids = tmp_path / "pids"
    stubborn = f"trap '' TERM; sleep 60 & echo $! > {pids}; wait; sleep 60"  # its child ignores TERM too
    start = time.monotonic()
    status = gpu_check.run(["bash", "-c", stubborn], 1, tmp_path / "out.log", dict(os.environ))
    assert status == 124 and time.monotonic() - start < 10
    time.sleep(0.2)
    assert not alive(int(pids.read_text()))
    assert gpu_check.run(["bash", "-c", "echo hi; exit 3"], 5, tmp_path / "out.log", dict(os.environ)) == 3
    assert (tmp_path / "out.log").read_text() == "hi\n"


# ---- the probe -------------------------------------------------------------------------------------

@pytest.mark.parametrize("program, expected", [
    ("print('[INFO] torch 9.9'); print('cuda: Fake H200 (torch 9.9, CUDA 12.8, 1 device)')",
     "Fake H200 (torch 9.9, CUDA 12.8, 1 device)"),
    ("print('no CUDA here (torch is not installed)'); raise SystemExit(1)", None),
])
def test_the_probe_reads_the_cuda_line(program, expected, capsys):
    assert gpu_check.probe([sys.executable, "-c", program], 30, dict(os.environ)) == expected
    assert capsys.readouterr().out == ("" if expected else "gpu_check: no CUDA here (torch is not installed); "
                                                           "nothing to do\n")


@pytest.mark.parametrize("program, why", [
    ("import sys; sys.exit('Traceback: something broke')", "exit status 1: Traceback: something broke"),
    ("import time; time.sleep(30)", "exit status 124: no answer within 1 s"),
])
def test_a_probe_that_breaks_or_hangs_is_an_error(program, why, capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.probe([sys.executable, "-c", program], 1, dict(os.environ))
    assert exc.value.code == 1
    out, err = capsys.readouterr()
    assert out == "" and "gpu_check: error: cannot tell whether there is a CUDA GPU (" in err and why in err, err


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
    assert speed.cuda_status() == (ok, text)


def test_the_probe_cli_prints_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", fake_torch())
    assert speed.main(["--cuda"]) == 0
    assert capsys.readouterr().out == "cuda: Fake H200 (torch 9.9, CUDA 12.8, 1 device)\n"
    monkeypatch.setitem(sys.modules, "torch", None)
    assert speed.main(["--cuda"]) == 1
    assert capsys.readouterr().out == "no CUDA here (torch is not installed)\n"
