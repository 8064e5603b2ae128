"""scripts/benchmark.sh and python3 -m unet_infer.benchmark: configs, loop planning, BENCHMARKS.md sections.

The end-to-end runs use a tiny UNet (width 4, 32 x 32) and never look at how fast it ran: the
figures only have to be positive numbers.
"""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from unet_infer import benchmark
from unet_infer.benchmark import (COLUMNS, TITLE, merge_section, parse_batchsizes, parse_configs, plan_loop,
                                  run_config, section_heading, split_sections)
from unet_infer.cli import UserError
from unet_infer.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.sh"
TINY = ["--weights", "random", "--width", "4", "--size", "32"]
CONFIGS = "onnxruntime:fp32,onnxruntime:int8,torch:fp32"
FOREIGN = """## NVIDIA H100 80GB HBM3 · UNet w64 modelzoo, random weights (seed 0), 572x572 · 2020-01-01

| Backend | Precision | Batch size | images/s | p50 ms/batch | p99 ms/batch | ms/image | loop | Machine | Date |
|---|---|---|---|---|---|---|---|---|---|
| torch | fp16 | 8 | 123.45 | 64.80 | 65.10 | 8.10 | 100 | NVIDIA H100 80GB HBM3 | 2020-01-01 |
"""
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def run_cli(*args, script=False):
    cmd = ["bash", str(SCRIPT), *args] if script else [sys.executable, "-m", "unet_infer.benchmark", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def section_of(text, heading_start):
    """The one section whose heading starts with ``heading_start``."""
    _, sections = split_sections(text)
    found = [s for s in sections if s.startswith(heading_start)]
    assert len(found) == 1, [s.splitlines()[0] for s in sections]
    return found[0]


def table_rows(section):
    """Each data row of the section's table as {column: cell}."""
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[0] == "| " + " | ".join(COLUMNS) + " |"
    return [dict(zip(COLUMNS, [c.strip() for c in line.strip("|").split("|")])) for line in lines[1:]]


# ---- pure functions ----------------------------------------------------------------------

def test_parse_configs():
    assert parse_configs("onnxruntime:fp32,torch:bf16,onnxruntime:fp32") == [("onnxruntime", "fp32"),
                                                                            ("torch", "bf16")]
    assert parse_configs("onnxruntime:int8,torch:fp16,acl:fp16")[-1] == ("acl", "fp16")
    for bad in ("onnxruntime:bf16", "acl:fp32", "torch:int8", "tensorrt:fp16", "onnxruntime", ":fp32", ""):
        with pytest.raises(UserError, match="--configs"):
            parse_configs(bad)


def test_parse_batchsizes():
    assert parse_batchsizes("1,4,8,4") == [1, 4, 8]
    for bad in ("0", "1,,2", "x", "-1", ""):
        with pytest.raises(UserError, match="--batchsizes"):
            parse_batchsizes(bad)


def test_plan_loop():
    assert plan_loop(100, 1, None, 5.0) == 100            # no budget: the loop as asked
    assert plan_loop(100, 1, 60, 0.1) == 100              # fits: never more than asked
    assert plan_loop(100, 1, 60, 3.0) == 19               # 1 warm-up + 19 timed runs of 3 s
    assert plan_loop(100, 1, 60, 3.0, overhead_s=6) == 17
    assert plan_loop(100, 1, 60, 100.0) == 1              # never below 1


class FakeRunner:
    """Stands in for Runner: each run 'takes' 2 s per image of compute plus 1 s to start."""

    warmup = 1

    def __init__(self):
        self.loops = []

    def run(self, model, backend, precision, bs, loop):
        self.loops.append((bs, loop))
        per_batch_ms = 2000.0 * bs
        summary = {"throughput": 1000.0 * bs / per_batch_ms, "machine": "Test CPU, 2 cores",
                   "NPU_compute_time": {"mean": per_batch_ms, "median": per_batch_ms,
                                        "percentile(99%)": per_batch_ms, "count": loop}}
        return summary, 1.0 + (self.warmup + loop) * per_batch_ms / 1000.0, 0, Path("run.log")


def test_max_seconds_cuts_the_loop(capsys):
    runner = FakeRunner()
    models = {("torch", "fp32", bs): Path("w.pth") for bs in (1, 2, 8)}
    rows, failures = run_config(runner, models, "torch", "fp32", [1, 2, 8], 100, 30, "2026-01-01", "x")
    assert not failures
    # bs 1: a probe with loop 1 (5 s), then the 25 s left allow 1 s + 2 s x (1 + 11); bs 2: planned from the
    # probe's time per image; bs 8: 16 s per batch, so loop 1 (the least) with its warm-up run.
    assert runner.loops == [(1, 1), (1, 11), (2, 6), (8, 1)]
    assert [r["loop"] for r in rows] == [11, 6, 1]
    assert [r["machine"] for r in rows] == ["Test CPU, 2 cores"] * 3
    assert "loop 11 (cut from 100 by --max-seconds 30)" in capsys.readouterr().out


def test_probe_is_the_row_when_one_run_fills_the_budget():
    runner = FakeRunner()
    rows, _ = run_config(runner, {("torch", "fp32", 4): Path("w.pth")}, "torch", "fp32", [4], 100, 20, "d", "x")
    assert runner.loops == [(4, 1)]
    assert rows[0]["loop"] == 1


def test_a_failed_run_is_reported_not_tabled():
    class Failing(FakeRunner):
        def run(self, model, backend, precision, bs, loop):
            if bs == 2:
                return None, 1.0, 3, Path("bs2.log")
            return super().run(model, backend, precision, bs, loop)

    models = {("torch", "fp16", bs): Path("w.pth") for bs in (1, 2)}
    rows, failures = run_config(Failing(), models, "torch", "fp16", [1, 2], 2, None, "d", "x")
    assert [r["batchsize"] for r in rows] == [1]
    assert [(f["batchsize"], f["status"]) for f in failures] == [(2, 3)]
    section = benchmark.render_section("## m · x · d", rows, "a UNet", ["cmd"], "sw", None, failures)
    assert "Failed runs (no row): torch fp16 bs 2 (exit status 3)." in section


def test_merge_section_replaces_its_own_and_keeps_others():
    mine = section_heading("CPU X, 2 cores", "UNet w4", "2026-01-01")
    first = merge_section(FOREIGN, f"{mine}\n\n| old |\n")
    assert first.startswith(TITLE + "\n")
    second = merge_section(first, f"{mine}\n\n```bash\n## not a heading\n```\n\n| new |\n")
    header, sections = split_sections(second)
    assert "75.06" in header                               # the seed's 310P3 figure stays on top
    assert [s.splitlines()[0] for s in sections] == [FOREIGN.splitlines()[0], mine]
    assert "| new |" in sections[1] and "| old |" not in second
    assert sections[0] == FOREIGN
    assert second.count(TITLE) == 1
    assert merge_section(second, sections[1]) == second     # idempotent


# ---- end to end --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_runs(tmp_path_factory):
    """Two runs on the same markdown: all configs x bs 1,2, then onnxruntime:fp32 alone with --max-seconds."""
    tmp = tmp_path_factory.mktemp("bench")
    markdown = tmp / "BENCHMARKS.md"
    markdown.write_text(FOREIGN)
    work = tmp / "work"
    first = run_cli(*TINY, "--batchsizes", "1,2", "--configs", CONFIGS, "--loop", "2", "--workdir", str(work),
                    "--markdown", str(markdown), "--plot", str(tmp / "plot.png"), "--quiet")
    assert first.returncode == 0, first.stderr[-3000:]
    after_first = markdown.read_text()
    compiled = work / "models" / "random_w4_s32" / "UNet_bs1.onnx"
    compiled_mtime = compiled.stat().st_mtime
    second = run_cli(*TINY, "--batchsizes", "1,2", "--configs", "onnxruntime:fp32", "--loop", "3",
                     "--max-seconds", "1000", "--workdir", str(work), "--markdown", str(markdown), "--quiet")
    assert second.returncode == 0, second.stderr[-3000:]
    return {"tmp": tmp, "markdown": markdown, "work": work, "first": first, "after_first": after_first,
            "second": second, "after_second": markdown.read_text(), "compiled": compiled,
            "compiled_mtime": compiled_mtime}


def test_section_has_one_row_per_config_and_batch_size(bench_runs):
    machine = describe_machine()
    section = section_of(bench_runs["after_first"], f"## {machine} · UNet w4 ")
    rows = table_rows(section)
    pairs = [(r["Backend"], r["Precision"], r["Batch size"]) for r in rows]
    assert pairs == [(b, p, bs) for b, p in parse_configs(CONFIGS) for bs in ("1", "2")]
    date = section.splitlines()[0].rsplit(" · ", 1)[1]
    assert DATE.fullmatch(date)
    for row in rows:
        assert row["Machine"] == machine
        assert row["Date"] == date
        assert row["loop"] == "2"
        for column in ("images/s", "p50 ms/batch", "p99 ms/batch", "ms/image"):
            assert float(row[column]) > 0, (column, row)
    assert "python3 -m unet_infer.benchmark --weights random --width 4 --size 32" in section
    assert "31.0 M parameters" in bench_runs["after_first"]  # the header names the model for speed
    assert "![images/s against batch size](plot.png)" in section
    assert "[benchmark] torch fp32 bs 2:" in bench_runs["first"].stdout


def test_plot_is_800_by_500(bench_runs):
    with Image.open(bench_runs["tmp"] / "plot.png") as img:
        assert img.size == (800, 500)
    default_plots = list((bench_runs["tmp"] / "benchmarks").glob("*.png"))  # the second run's default
    assert len(default_plots) == 1
    with Image.open(default_plots[0]) as img:
        assert img.size == (800, 500)


def test_second_run_replaces_its_section_and_keeps_the_foreign_one(bench_runs):
    text = bench_runs["after_second"]
    header, sections = split_sections(text)
    assert TITLE in header and "75.06" in header
    assert text.count(TITLE) == 1
    headings = [s.splitlines()[0] for s in sections]
    assert headings[0] == FOREIGN.splitlines()[0]
    assert sections[0] == FOREIGN
    mine = [h for h in headings if h.startswith(f"## {describe_machine()} · UNet w4 ")]
    assert len(mine) == 1 and len(headings) == 2
    rows = table_rows(sections[1])
    assert [(r["Backend"], r["Precision"], r["Batch size"], r["loop"]) for r in rows] == [
        ("onnxruntime", "fp32", "1", "3"), ("onnxruntime", "fp32", "2", "3")]
    assert all(float(r["images/s"]) > 0 for r in rows)


def test_second_run_reuses_the_models_and_probes_once(bench_runs):
    assert bench_runs["compiled"].stat().st_mtime == bench_runs["compiled_mtime"]
    assert "reusing" in bench_runs["second"].stderr
    runs = sorted(p.name for p in (bench_runs["work"] / "runs").glob("onnxruntime_fp32_bs*_summary.json"))
    probes = [name for name in runs if "_loop1_" in name]
    assert len(probes) == 1 and probes[0].startswith("onnxruntime_fp32_bs1_")


# ---- the command lines -------------------------------------------------------------------

def test_script_help():
    result = run_cli("--help", script=True)
    assert result.returncode == 0, result.stderr
    for key in ("bs=", "configs=", "loop=", "max_seconds=", "weights=", "width=", "size=", "workdir=",
                "markdown=", "threads=", "device=", "quiet=", "examples:"):
        assert key in result.stdout


def test_module_help():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "--max-seconds" in result.stdout and "python3 -m unet_infer.bench" in result.stdout


@pytest.mark.parametrize("configs", ["acl:fp32", "onnxruntime:bf16", "torch:int8", "onnxruntime"])
def test_bad_configs_are_clean_errors(tmp_path, configs):
    for result in (run_cli(*TINY, "--configs", configs, "--workdir", str(tmp_path / "w"),
                           "--markdown", str(tmp_path / "B.md")),
                   run_cli(f"configs={configs}", "bs=1", "max_seconds=10", f"workdir={tmp_path / 'w'}",
                           f"markdown={tmp_path / 'B.md'}", script=True)):
        assert result.returncode == 2
        assert "error:" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "B.md").exists() and not (tmp_path / "w").exists()


@pytest.mark.skipif(importlib.util.find_spec("ais_bench") is not None, reason="ais_bench is installed here")
def test_acl_without_ais_bench_is_a_clean_error(tmp_path):
    result = run_cli(*TINY, "--configs", "acl:fp16", "--workdir", str(tmp_path / "w"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "ais_bench" in result.stderr and "Traceback" not in result.stderr


def test_script_rejects_bad_keys():
    for args in (["nope=1"], ["bs=0"], ["loop=x"], ["max_seconds=soon"], ["quiet=2"]):
        result = run_cli(*args, script=True)
        assert result.returncode == 2, args
        assert "error:" in result.stderr


def test_missing_weights_is_a_clean_error(tmp_path):
    result = run_cli("--weights", str(tmp_path / "none.pth"), "--configs", "torch:fp32", "--workdir",
                     str(tmp_path / "w"))
    assert result.returncode == 2
    assert "checkpoint not found" in result.stderr


def test_module_imports_nothing_heavy():
    """The benchmark driver itself stays light: torch and onnxruntime are imported where they are used."""
    code = ("import sys, unet_infer.benchmark; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.stdout.strip() == "[]"
    assert benchmark.PRECISIONS["onnxruntime"] == ("fp32", "int8")
