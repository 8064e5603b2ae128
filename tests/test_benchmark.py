"""python3 -m unet_infer.speed and scripts/benchmark.sh: configs against the backend registry,
machine defaults, loop planning, rows read through the summary accessors, BENCHMARKS.md sections,
the models made once through the stage manifests, and a tiny real benchmark end to end.

The end-to-end runs use a width-4 UNet at 32 x 32 with one timed run; how fast it ran is never
checked, only that the figures are positive numbers.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from unet_infer import backends
from unet_infer import progress, speed
from unet_infer import simplify as simplify_module
from unet_infer.speed import COLUMNS, HEADER, merge_section, render_section, section_heading, split_sections
from unet_infer.speed.models import make_random_weights, model_workdir, prepare_models
from unet_infer.speed.runs import Job, Run, Runner, benchmark_rows, make_row, measure, plan_loop
from unet_infer.cli import UserError
from unet_infer.machine import describe_machine
from unet_infer import summary as summ
from unet_infer.summary import build_summary

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.sh"
TINY = ["--width", "4", "--size", "32"]
TITLES = list(COLUMNS)
LEGACY_TITLES = TITLES[:10]  # sections written before the rounds and the bare column
FOREIGN = """## NVIDIA H100 80GB HBM3 · UNet w64 modelzoo, random weights (seed 0), 572x572 · 2020-01-01

| Backend | Precision | Batch size | images/s | p50 ms/batch | p99 ms/batch | ms/image | loop | Machine | Date |
|---|---|---|---|---|---|---|---|---|---|
| torch | fp16 | 8 | 123.45 | 64.80 | 65.10 | 8.10 | 100 | NVIDIA H100 80GB HBM3 | 2020-01-01 |
"""
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def run_script(*args, env=None):
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def table_rows(section):
    """Each data row of the section's table as {column: cell}."""
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    titles = [c.strip() for c in lines[0].strip("|").split("|")]
    assert titles in (TITLES, LEGACY_TITLES)
    return [dict(zip(titles, [c.strip() for c in line.strip("|").split("|")])) for line in lines[1:]]


def fake_summary(bs, per_batch_ms, loop=1, machine="Test CPU, 2 cores", precision=None):
    """A summary as the runner writes it (built by summary.py itself)."""
    extra = {"machine": machine, "precision": precision} if precision else {"machine": machine}
    return build_summary({}, {}, [per_batch_ms] * loop, [0.0] * loop, [0.0] * loop, bs, 1, extra=extra)


# ---- configs and defaults --------------------------------------------------------------------

def test_configs_accept_exactly_what_each_backend_declares():
    every = backends.precisions()
    for cls in backends.all_backends():
        ok = [f"{cls.name}:{p}" for p in cls.precisions]
        assert speed.parse_configs(",".join(ok + ok[:1])) == [(cls.name, p) for p in cls.precisions]
        for precision in set(every) - set(cls.precisions):
            with pytest.raises(argparse.ArgumentTypeError, match=f"not available on {cls.name}"):
                speed.parse_configs(f"{cls.name}:{precision}")
    for bad in ("tensorrt:fp16", "onnxruntime", ":fp32", "", "torch:"):
        with pytest.raises(argparse.ArgumentTypeError):
            speed.parse_configs(bad)


def test_machine_defaults_are_valid_configs_and_fill_only_what_is_missing(monkeypatch):
    cpu, gpu = speed.DEFAULTS["CPU"], speed.DEFAULTS["GPU"]
    for defaults, has_gpu in ((cpu, False), (gpu, True)):
        monkeypatch.setattr(backends, "has_gpu", lambda: has_gpu)
        bs, configs, seconds, note = speed.fill_defaults(None, None, None)
        assert bs == [int(b) for b in defaults["batchsizes"].split(",")]
        assert configs == speed.parse_configs(defaults["configs"]) and configs
        assert seconds == float(defaults["max_seconds"])
        assert note == (f"a CUDA GPU is available: GPU defaults --batchsizes 1,4,8,16,32,64 --configs "
                        f"{gpu['configs']} --max-seconds 120" if has_gpu else
                        f"no CUDA GPU: CPU defaults --batchsizes 1,2,4 --configs {cpu['configs']} --max-seconds 60")
    bs, configs, seconds, note = speed.fill_defaults([3], None, "none")
    assert (bs, configs, seconds) == ([3], speed.parse_configs(gpu["configs"]), None)
    assert "--configs" in note and "--batchsizes" not in note and "--max-seconds" not in note
    monkeypatch.setattr(backends, "has_gpu", lambda: pytest.fail("asked though every option was given"))
    given = speed.fill_defaults([1], [("torch", "fp32")], 5.0)
    assert given == ([1], [("torch", "fp32")], 5.0, None)


def test_help_shows_each_default_once_and_both_machine_defaults():
    text = speed.build_parser().format_help()
    assert "(default: 100)" in text and "(default: None)" not in text and "(default: False)" not in text
    for line in text.splitlines():
        assert line.count("(default:") <= 1, line
    flat = " ".join(text.split())
    cpu, gpu = speed.DEFAULTS["CPU"], speed.DEFAULTS["GPU"]
    assert f"{cpu['batchsizes']} on the CPU, {gpu['batchsizes']} with a CUDA GPU" in flat
    assert backends.describe() in flat


# ---- the runs --------------------------------------------------------------------------------

def test_plan_loop():
    assert plan_loop(100, 1, None, 5.0) == 100            # no budget: the loop as asked
    assert plan_loop(100, 1, 60, 0.1) == 100              # fits: never more than asked
    assert plan_loop(100, 1, 60, 3.0) == 19               # 1 warm-up + 19 timed runs of 3 s
    assert plan_loop(100, 1, 60, 3.0, overhead_s=6) == 17
    assert plan_loop(100, 1, 60, 100.0) == 1              # never below 1


class FakeRunner:
    """Stands in for Runner: each run 'takes' 2 s per image of compute plus 1 s to start; a bare
    session runs 4 images/s."""

    warmup = 1

    def __init__(self, fail_bs=()):
        self.loops, self.fail_bs, self.bare_calls = [], fail_bs, []

    def bare(self, job, loop):
        self.bare_calls.append((str(job), loop))
        return [250.0 * job.batchsize] * loop

    def run(self, job, loop):
        self.loops.append((job.batchsize, loop))
        if job.batchsize in self.fail_bs:
            return Run(None, 1.0, 3, loop)
        per_batch_ms = 2000.0 * job.batchsize
        wall = 1.0 + (self.warmup + loop) * per_batch_ms / 1000.0
        return Run(fake_summary(job.batchsize, per_batch_ms, loop), wall, 0, loop)


def jobs(*batchsizes, backend="torch", precision="fp32"):
    return [Job(backend, precision, bs, Path("w.pth")) for bs in batchsizes]


def test_max_seconds_cuts_the_loop(capsys):
    runner = FakeRunner()
    rows, failures = benchmark_rows(runner, [jobs(1, 2, 8)], 100, 30, "2026-01-01")
    assert not failures
    # bs 1: a probe with loop 1 (5 s), then the 25 s left allow 1 s + 2 s x (1 + 11); bs 2: planned from the
    # probe's time per image; bs 8: 16 s per batch, so loop 1 (the least) with its warm-up run.
    assert runner.loops == [(1, 1), (1, 11), (2, 6), (8, 1)]
    assert [r["loop"] for r in rows] == [11, 6, 1]
    assert [r["machine"] for r in rows] == ["Test CPU, 2 cores"] * 3
    assert "loop 11 (cut from 100 by --max-seconds 30)" in capsys.readouterr().out


def test_probe_is_the_row_when_one_run_fills_the_budget_and_no_budget_means_no_probe():
    runner = FakeRunner()
    rows, _ = benchmark_rows(runner, [jobs(4)], 100, 20, "d")
    assert runner.loops == [(4, 1)] and rows[0]["loop"] == 1
    runner = FakeRunner()
    benchmark_rows(runner, [jobs(1, 2)], 7, None, "d")
    assert runner.loops == [(1, 7), (2, 7)]


def test_a_failed_run_is_reported_not_tabled_and_the_next_one_probes_again():
    runner = FakeRunner(fail_bs=(1,))
    rows, failures = benchmark_rows(runner, [jobs(1, 2, precision="fp16")], 100, 30, "d")
    assert runner.loops[0] == (1, 1) and runner.loops[1] == (2, 1)   # no time per image yet: bs 2 probes
    assert [r["batchsize"] for r in rows] == [2]
    assert [(f["batchsize"], f["status"]) for f in failures] == [(1, 3)]
    section = render_section("## m · x · d", rows, "a UNet", ["cmd"], "sw", None, failures)
    assert "Failed runs (no row): torch fp16 bs 1 (exit status 3)." in section


def test_measure_learns_time_per_image_and_fixed_cost():
    runner, learned = FakeRunner(), []
    measure(runner, jobs(2)[0], 100, None, learned)  # no budget: the loop as asked, no probe
    assert runner.loops == [(2, 100)] and learned == pytest.approx([2.0, 1.0])  # 4 s per batch, 1 s to start
    measure(runner, jobs(4)[0], 100, 30, learned)    # planned from them, no probe: 1 s + (1 + 2) x 8 s <= 30 s
    assert runner.loops[1:] == [(4, 2)] and learned == pytest.approx([2.0, 1.0])


def test_rounds_are_interleaved_and_rows_are_their_medians_beside_a_bare_session(monkeypatch, capsys):
    order, loads = [], iter([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0))

    class Recording(FakeRunner):
        def run(self, job, loop):
            order.append(str(job))
            return super().run(job, loop)

    runner = Recording()
    a, b = jobs(1, backend="onnxruntime"), jobs(1, backend="openvino")
    rows, failures = benchmark_rows(runner, [a, b], 3, None, "d", rounds=3, bare=True)
    assert not failures
    assert order == ["onnxruntime fp32 bs 1", "openvino fp32 bs 1"] * 3  # A, B, A, B, A, B
    assert runner.bare_calls == [("openvino fp32 bs 1", 3)] * 3        # after the runner, in each round
    ort_row, ov_row = rows
    assert ort_row["rounds"] == 3 and ort_row["fps"] == pytest.approx(0.5) and ort_row["bare_fps"] is None
    assert (ort_row["load"], ort_row["load_max"]) == (3.0, 5.0)          # the loads at rows A: 1, 3, 5
    assert ov_row["bare_fps"] == pytest.approx(4.0) and ov_row["vs_bare"] == pytest.approx(0.125)
    section = render_section("## m · x · d", rows, "a UNet", ["cmd"], "sw", note="rounds note")
    cells = table_rows(section)
    assert cells[1]["runner / bare"] == "0.12" and cells[1]["bare OpenVINO images/s"] == "4.00"
    assert cells[0]["load 1 min"] == "3.0 (max 5.0)" and cells[0]["images/s range"] == "0.50-0.50"
    assert "rounds note" in section and "0.12x a bare OpenVINO session" in capsys.readouterr().out


def test_a_failed_quiet_run_shows_its_last_lines_and_is_no_row(tmp_path, capsys):
    run = Runner(tmp_path, 32, 1, quiet=True).run(Job("onnxruntime", "fp32", 1, tmp_path / "none.onnx"), 1)
    assert (run.summary, run.status) == (None, 2)
    assert "none.onnx: model not found" in capsys.readouterr().err


def test_bare_command_times_the_rows_own_model(tmp_path):
    cmd = Runner(tmp_path, 572, 2, threads=2).bare_command(Job("openvino", "int8", 1, Path("UNet_int8_bs1.xml")), 5)
    assert cmd[1:3] == ["-m", "unet_infer.speed.bare"]
    for flag in ("--model=UNet_int8_bs1.xml", "--precision=int8", "--loop=5", "--warmup=2", "--threads=2"):
        assert flag in cmd


def test_a_row_says_when_the_backend_ran_another_precision():
    summary = fake_summary(1, 100.0, precision="fp32")  # openvino bf16 on a CPU without bf16
    row = make_row(Job("openvino", "bf16", 1, Path("UNet_bs1.xml")), [(summary, None, 0.5)], 1, "d")
    assert table_rows(render_section("## m · x · d", [row], "a UNet", ["cmd"], "sw"))[0]["Precision"] == \
        "bf16 (ran fp32)"


def test_row_is_read_through_the_summary_accessors(monkeypatch):
    summary = fake_summary(4, 200.0, loop=3, machine="CPU Y, 8 cores, GPU Z", precision="bf16")
    row = make_row(Job("torch", "bf16", 4, Path("w.pth")), [(summary, None, 0.5)], 3, "2026-02-03")
    assert row["fps"] == pytest.approx(20.0) and row["ms_per_image"] == pytest.approx(50.0)
    assert row["p50"] == row["p99"] == pytest.approx(200.0)
    assert row["machine"] == "CPU Y, 8 cores, GPU Z"
    del summary["machine"]
    machine = make_row(Job("acl", "fp16", 4, Path("m.om")), [(summary, None, 0.5)], 3, "d")
    assert machine["machine"] == describe_machine() + ", Ascend NPU"
    # every figure comes from unet_infer.summary's accessors: given other answers, the row shows them
    # (a row that read the summary's keys itself would show the summary's own figures above)
    answers = {"throughput": lambda s: 7.0, "compute_ms": lambda s, stat="mean": 36.0,
               "percentile_ms": lambda s, p: float(p), "machine": lambda s: "the accessor's machine",
               "precision": lambda s: "fp16"}
    for name, answer in answers.items():
        monkeypatch.setattr(summ, name, answer)
    row = make_row(Job("torch", "bf16", 4, Path("w.pth")), [(summary, None, 0.5)], 3, "d")
    assert (row["fps"], row["p50"], row["p99"], row["ms_per_image"]) == (7.0, 50.0, 99.0, 9.0)
    assert (row["machine"], row["ran"]) == ("the accessor's machine", "fp16")


def test_runner_command_passes_the_rows_options(tmp_path):
    runner = Runner(tmp_path, 32, 2, threads=3, device=1, quiet=True)
    cmd = runner.command(Job("onnxruntime", "int8", 8, Path("UNet_int8_bs8.onnx")), 5, "run")
    assert cmd[1:3] == ["-m", "unet_infer.bench"]
    for flag in ("--model=UNet_int8_bs8.onnx", "--loop=5", "--batchsize=8", "--warmup_count=2", "--backend=onnxruntime",
                 "--precision=int8", "--threads=3", "--device=1", "--quiet", f"--output={tmp_path / 'runs'}"):
        assert flag in cmd


# ---- BENCHMARKS.md ---------------------------------------------------------------------------

def test_merge_section_replaces_its_own_and_keeps_others():
    mine = section_heading("CPU X, 2 cores", "UNet w4", "2026-01-01")
    first = merge_section(FOREIGN, f"{mine}\n\n| old |\n")
    assert first.startswith(HEADER.rstrip() + "\n\n")
    second = merge_section(first, f"{mine}\n\n```bash\n## not a heading\n```\n\n| new |\n")
    header, sections = split_sections(second)
    assert "75.06" in header                               # the seed's 310P3 figure stays on top
    assert [s.splitlines()[0] for s in sections] == [FOREIGN.splitlines()[0], mine]
    assert "| new |" in sections[1] and "| old |" not in second
    assert sections[0] == FOREIGN
    assert second.count(HEADER.splitlines()[0]) == 1
    assert merge_section(second, sections[1]) == second     # idempotent


def test_the_repository_benchmarks_md_keeps_its_format():
    text = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    header, sections = split_sections(text)
    assert header.rstrip() == HEADER.rstrip()
    # the benchmark's own sections (machine · model · date) hold its table; the others (Ray Data,
    # the bundled model's accuracy) are written by hand and kept as they are by every merge
    ours = [s for s in sections if re.match(r"## .+ · UNet w\d+ .+ · \d{4}-\d{2}-\d{2}\n", s)]
    assert ours and all(table_rows(s) for s in ours)
    for section in sections:
        assert merge_section(text, section) == text


def test_python_command_parses_back_to_the_same_run(tmp_path):
    args = speed.build_parser().parse_args([*TINY, "--weights", str(tmp_path / "w.pth"), "--threads", "2",
                                            "--markdown", "B.md"])
    text = speed.python_command(args, [1, 2], [("torch", "bf16")], None)
    again = speed.build_parser().parse_args(text.split()[3:])
    assert again.batchsizes == [1, 2] and again.configs == [("torch", "bf16")] and again.max_seconds == "none"
    assert (again.width, again.size, again.threads, again.weights) == (4, 32, 2, str(tmp_path / "w.pth"))


# ---- the models --------------------------------------------------------------------------------

def test_random_weights_are_made_once(tmp_path):
    first = prepare_models(tmp_path, "random", 4, 32, [("torch", "fp32")], [1, 2])
    assert first.built == ["weights"]
    assert first.paths == {("torch", "fp32", 1): first.pth, ("torch", "fp32", 2): first.pth}
    mtime = first.pth.stat().st_mtime_ns
    assert prepare_models(tmp_path, "random", 4, 32, [("torch", "fp32")], [1]).built == []
    assert first.pth.stat().st_mtime_ns == mtime


# ---- end to end --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_runs(tmp_path_factory):
    """A real benchmark (onnxruntime fp32 and int8, bs 1, one timed run) on a markdown that holds a
    foreign section; then onnxruntime fp32 again on the same markdown with the default plot.

    Everything is real but onnxsim, which a copy stands in for: importing it costs more CPU time
    than the rest of a run (the driver's tests run it); the stage around it is the benchmark's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(simplify_module, "simplify", copy_model)
        patch.setattr(progress, "_QUIET", progress.is_quiet())  # main(--quiet) sets it for the process
        yield _bench_runs(tmp_path_factory)


def copy_model(src, dst, size):
    shutil.copyfile(src, dst)
    return dst


def _bench_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    weights = make_random_weights(tmp / "w4.pth", 4, seed=3)
    markdown, work = tmp / "BENCHMARKS.md", tmp / "work"
    markdown.write_text(FOREIGN, encoding="utf-8")
    common = [*TINY, "--weights", str(weights), "--batchsizes", "1", "--loop", "1", "--max-seconds", "none",
              "--workdir", str(work), "--markdown", str(markdown), "--quiet", "--rounds", "1", "--warmup", "1"]
    assert speed.main([*common, "--configs", "onnxruntime:fp32,onnxruntime:int8,openvino:fp32",
                       "--plot", str(tmp / "plot.png")]) == 0
    folder = model_workdir(work, str(weights), 4, 32)
    compiled = {p.name: p.stat().st_mtime_ns for p in folder.root.glob("*.onnx")}
    after_first = markdown.read_text(encoding="utf-8")
    assert speed.main([*common, "--configs", "onnxruntime:fp32"]) == 0
    return {"tmp": tmp, "weights": weights, "markdown": markdown, "work": work, "folder": folder,
            "compiled": compiled, "after_first": after_first, "after_second": markdown.read_text(encoding="utf-8")}


def test_section_has_one_row_per_config_and_batch_size(bench_runs):
    machine = describe_machine()
    _, sections = split_sections(bench_runs["after_first"])
    assert sections[0] == FOREIGN and len(sections) == 2
    section = sections[1]
    assert section.startswith(f"## {machine} · UNet w4 modelzoo, w4.pth, 32x32 · ")
    rows = table_rows(section)
    assert [(r["Backend"], r["Precision"], r["Batch size"]) for r in rows] == [
        ("onnxruntime", "fp32", "1"), ("onnxruntime", "int8", "1"), ("openvino", "fp32", "1")]
    assert float(rows[2]["bare OpenVINO images/s"]) > 0 and float(rows[2]["runner / bare"]) > 0
    assert rows[0]["runner / bare"] == "" and rows[0]["rounds"] == "1" and float(rows[0]["load 1 min"]) >= 0
    date = section.splitlines()[0].rsplit(" · ", 1)[1]
    assert DATE.fullmatch(date)
    for row in rows:
        assert (row["Machine"], row["Date"], row["loop"]) == (machine, date, "1")
        for column in ("images/s", "p50 ms/batch", "p99 ms/batch", "ms/image"):
            assert float(row[column]) > 0, (column, row)
    assert "--batchsizes 1 --configs onnxruntime:fp32,onnxruntime:int8,openvino:fp32" in section
    assert "medians of 1 interleaved round(s)" in section
    assert "![images/s against batch size](plot.png)" in section
    with Image.open(bench_runs["tmp"] / "plot.png") as img:
        assert img.size == (800, 500)


def test_second_run_replaces_its_section_keeps_the_foreign_one_and_plots_beside_it(bench_runs):
    header, sections = split_sections(bench_runs["after_second"])
    assert header.rstrip() == HEADER.rstrip()
    assert [s.splitlines()[0] for s in sections] == [FOREIGN.splitlines()[0],
                                                     split_sections(bench_runs["after_first"])[1][1].splitlines()[0]]
    assert [(r["Backend"], r["Precision"]) for r in table_rows(sections[1])] == [("onnxruntime", "fp32")]
    plots = list((bench_runs["tmp"] / "benchmarks").glob("*.png"))
    assert len(plots) == 1 and f"(benchmarks/{plots[0].name})" in sections[1]


def test_models_are_reused_then_rebuilt_when_the_weights_change(bench_runs, monkeypatch):
    folder, compiled = bench_runs["folder"], bench_runs["compiled"]
    assert {"UNet_dynamic_bs.onnx", "UNet_dynamic_sim.onnx", "UNet_int8.onnx", "UNet_bs1.onnx",
            "UNet_int8_bs1.onnx"} <= set(compiled)
    # the second run reused every model: none was written again
    assert {p.name: p.stat().st_mtime_ns for p in folder.root.glob("*.onnx")} == compiled
    args = (bench_runs["work"], str(bench_runs["weights"]), 4, 32, [("onnxruntime", "fp32")], [1])
    assert prepare_models(*args).built == []
    monkeypatch.setattr(simplify_module, "simplify", copy_model)
    make_random_weights(bench_runs["weights"], 4, seed=4)  # same file name, other weights
    assert prepare_models(*args).built == ["export", "simplify", "compile_onnxruntime_fp32_bs1"]
    assert (folder / "UNet_bs1.onnx").stat().st_mtime_ns != compiled["UNet_bs1.onnx"]
    assert prepare_models(*args).built == []
    (folder / "UNet_bs1.onnx").write_bytes(b"")  # a damaged model is made again
    assert prepare_models(*args).built == ["compile_onnxruntime_fp32_bs1"]


# ---- the command lines -------------------------------------------------------------------------

@pytest.fixture
def echo_python(tmp_path):
    """A stand-in for python3 that prints the arguments it was given, one per line."""
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    return {"PYTHON": str(fake)}


def test_script_maps_keys_to_flags_and_leaves_the_defaults_to_the_module(echo_python):
    result = run_script("configs=torch:bf16", "max_seconds=none", "quiet=1", "threads=2", env=echo_python)
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()[1:]
    assert args[:2] == ["-m", "unet_infer.speed"]
    pairs = dict(zip(args[2::2], args[3::2]))
    assert pairs["--configs"] == "torch:bf16" and pairs["--max-seconds"] == "none" and pairs["--threads"] == "2"
    assert "--batchsizes" not in args and args[-1] == "--quiet"
    assert "--markdown" not in args  # the module's default: WORKDIR/BENCHMARKS.md, not the repository's
    published = run_script("publish=1", env=echo_python).stdout.splitlines()[1:]
    assert dict(zip(published[2::2], published[3::2]))["--markdown"] == str(REPO / "BENCHMARKS.md")
    both = run_script("publish=1", "markdown=B.md", env=echo_python)
    assert both.returncode == 2 and "give one" in both.stderr
    text = SCRIPT.read_text()
    assert "import" not in text and " -c " not in text     # the shell calls package CLIs only


def test_the_table_goes_into_the_work_folder_unless_a_markdown_is_named(tmp_path):
    """Without --markdown the section is written to WORKDIR/BENCHMARKS.md, never the repository's."""
    (tmp_path / "w" / "BENCHMARKS.md").mkdir(parents=True)  # in the way: the error names where it would go
    with pytest.raises(UserError, match=f"{tmp_path / 'w' / 'BENCHMARKS.md'}: is a folder"):
        speed.main(["--configs", "torch:fp32", "--workdir", str(tmp_path / "w")])


def test_script_help_and_bad_keys():
    result = run_script("--help")
    assert result.returncode == 0, result.stderr
    for key in ("bs=", "configs=", "loop=", "max_seconds=", "weights=", "width=", "size=", "workdir=",
                "markdown=", "publish=", "plot=", "threads=", "device=", "quiet=", "examples:", "scripts/benchmark.sh"):
        assert key in result.stdout
    for args in (["nope=1"], ["quiet=2"], ["bs"], ["publish=yes"]):
        result = run_script(*args)
        assert result.returncode == 2 and "error:" in result.stderr, args


@pytest.mark.parametrize("key,value", [("configs", "acl:fp32"), ("bs", "0")])
def test_bad_values_are_clean_errors_before_any_work(tmp_path, key, value):
    result = run_script(f"{key}={value}", f"workdir={tmp_path / 'w'}", f"markdown={tmp_path / 'B.md'}")
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "B.md").exists() and not (tmp_path / "w").exists()


@pytest.mark.parametrize("argv", [["--configs", "onnxruntime:bf16"], ["--configs", "torch"], ["--batchsizes", "1,,2"],
                                  ["--max-seconds", "soon"], ["--max-seconds", "0"], ["--loop", "x"], ["--size", "8"]])
def test_bad_flags_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        speed.build_parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument ") and argv[0] in err.splitlines()[0]


def test_missing_weights_and_missing_backends_are_clean_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="checkpoint not found"):
        speed.main(["--weights", str(tmp_path / "none.pth"), "--configs", "torch:fp32", "--workdir",
                    str(tmp_path / "w"), "--markdown", str(tmp_path / "B.md")])
    cls = backends.get_backend("onnxruntime")
    monkeypatch.setattr(cls, "available", classmethod(lambda c: (False, "pip install something")))
    with pytest.raises(UserError, match="--configs: pip install something"):
        speed.main([*TINY, "--configs", "onnxruntime:fp32", "--batchsizes", "1", "--max-seconds", "1",
                    "--workdir", str(tmp_path / "w"), "--markdown", str(tmp_path / "B.md")])
    assert not (tmp_path / "w").exists() and not (tmp_path / "B.md").exists()


def test_package_imports_nothing_heavy():
    """The benchmark itself stays light: torch, onnxruntime and matplotlib are imported where they are used."""
    code = ("import sys, unet_infer.speed; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr
