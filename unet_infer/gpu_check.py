"""The CUDA paths on a CUDA GPU in one command bounded in time (scripts/gpu_check.sh; HELP below):
each step under a timeout, judged by the files it wrote.

    python3 -m unet_infer.gpu_check steps=benchmark budget=240      (as scripts/gpu_check.sh)
"""

import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from . import summary as summ
from .cli import UserError, key_values, run_cli
from .results import read_results
from .speed import split_sections
from .speed.runs import repo_env
from .stages import result_lines, run_tag
from .workdir import Workdir

ROOT = Path(__file__).resolve().parents[1]
BASE = 480  # the default budget (s); each step's share of it (HELP says what each pays for):
SHARES = {"probe": 30, "tests": 150, "main": 110, "benchmark": 160}
SPARE = BASE - sum(SHARES.values())
KILL_AFTER = 5  # seconds between a step's TERM and its KILL
BENCH_FIXED = 20  # seconds of the benchmark step that are not rows: its start, the model, the plot
STEPS = ("tests", "main", "benchmark")
MAIN = ["bs=8", "backend=torch", "precision=fp16"]  # the main job's options
BENCH = ["rounds=1", "loop=100"]  # the benchmark's fixed options
STEP, CONFIG, BS = "(tests|main|benchmark)", "[a-z0-9_]+:[a-z0-9]+", "[1-9][0-9]*"
OPTIONS = {  # key: (default, the form of its value, that form in words)
    "budget": (str(BASE), "[0-9]+", "a whole number of seconds"),
    "workdir": ("./work/gpu_check", ".+", "a folder"),
    "steps": (",".join(STEPS), f"{STEP}(,{STEP})*", "a comma list of tests, main, benchmark"),
    "tests": ("tests/test_torch_backend.py", "[^,]+(,[^,]+)*", "a comma list of pytest targets"),
    "bs": ("1,8,32", f"{BS}(,{BS})*", "a comma list of batch sizes"),
    "configs": ("torch:fp32,torch:fp16,torch:bf16", f"{CONFIG}(,{CONFIG})*", "a comma list of backend:precision"),
    "markdown": (str(ROOT / "BENCHMARKS.md"), ".+", "a markdown file"),
}

HELP = """usage: scripts/gpu_check.sh [key=value ...]

On a machine whose torch sees a CUDA GPU, runs in at most budget= seconds, in this order:
  1. tests      python3 -m pytest -q -n 0 --durations=5 TESTS     (the tests that need CUDA, in one
                process: one GPU)
  2. main       scripts/run_all.sh bs=8 backend=torch precision=fp16 workdir=WORK/main quiet=1
  3. benchmark  scripts/benchmark.sh configs=CONFIGS bs=BS rounds=1 loop=100 max_seconds=S
                workdir=WORK/bench markdown=MARKDOWN quiet=1: the GPU section of BENCHMARKS.md,
                headed by the machine (CPU, cores, the GPU's name), the model and the date
Each step runs under a timeout of its share of the budget; a failed or timed-out step does not stop
the later ones. A step passes by what it wrote: pytest's JUnit report (WORK/steps/tests.xml: tests
ran, none failed); the main job's result_bs8.json and summary (torch fp16, on the GPU); a new section
in MARKDOWN (the GPU and the date in its heading, a row for every config and batch size, the other
sections kept). The end: a line per step (its verdict, wall time and figures); each step's output in
WORK/steps/<step>.log, all in WORK/gpu_check.log. Exit status 0 when every step passed, 1 when one
did not, 2 for a bad option; without CUDA (python3 -m unet_infer.speed --cuda) it prints
"gpu_check: no CUDA here (<reason>); nothing to do", writes nothing, exits 0.

budget=480 is shared: probe {probe} s (python3, torch import, CUDA init), tests {tests} s (3
torch.compile builds, ~40 s each), main {main} s (32 sample images, no export: torch runs the .pth;
2 runner processes, each a CUDA init; scoring; report), benchmark {benchmark} s (9 rows of the ModelZoo
UNet, 477.6 GFLOP per 572x572 image, max_seconds={per_row} each), spare {spare} s (stops, the summary).

options (key=value):
  budget=480        seconds for everything, at least 16: the probe's and the spare seconds
                    scale with budget/480, the steps asked for share the rest by their shares
  workdir=./work/gpu_check   WORK: the steps' work folders (main/, bench/), their logs (steps/)
                    and gpu_check.log
  steps=tests,main,benchmark   the steps to run (a comma list; always run in this order)
  tests=tests/test_torch_backend.py   TESTS: pytest targets relative to the repository (comma
                    list); its CUDA tests are marked `cuda` and skip without CUDA
  bs=1,8,32         BS: the benchmark's batch sizes
  configs=torch:fp32,torch:fp16,torch:bf16   CONFIGS: the benchmark's backend:precision list
                    (onnxruntime is a CPU build there: far too slow for the budget)
  markdown=BENCHMARKS.md   MARKDOWN: the file the section goes into (default: the repository's)

examples:
  scripts/gpu_check.sh
  scripts/gpu_check.sh steps=benchmark budget=240
  scripts/gpu_check.sh steps=tests,main workdir=/tmp/gpu_check
  scripts/gpu_check.sh; cp -r BENCHMARKS.md benchmarks work/gpu_check/gpu_check.log "$OUT"/
"""


def max_seconds(bench_budget, rows):
    """The benchmark's seconds per row: 5/6 of its budget without the fixed part, over the rows."""
    return max(1, (bench_budget - BENCH_FIXED) * 5 // (6 * rows))


def parse(argv):
    """``(options, steps, budgets)`` from key=value arguments; a bad one is a :class:`UserError`."""
    opts = key_values(argv, OPTIONS, "scripts/gpu_check.sh")
    budget = int(opts["budget"])
    if budget < 16:
        raise UserError(f"budget={budget}: at least 16 seconds (each step needs at least 1 s)")
    for target in opts["tests"].split(","):
        if not (ROOT / target.split("::")[0]).exists():
            raise UserError(f"tests=: {ROOT / target.split('::')[0]} not found (targets are relative to the repository)")
    if Path(opts["workdir"]).exists() and not Path(opts["workdir"]).is_dir():
        raise UserError(f"{opts['workdir']}: exists and is not a folder (workdir= must be a folder)")
    if Path(opts["markdown"]).is_dir():
        raise UserError(f"{opts['markdown']}: is a folder, expected a markdown file (markdown=)")
    steps = [s for s in STEPS if s in opts["steps"].split(",")]
    # the probe's and the spare seconds scale with budget=; the rest goes to the steps asked for, by their shares
    budgets = {"probe": max(1, budget * SHARES["probe"] // BASE), "spare": max(1, budget * SPARE // BASE)}
    wanted = sum(SHARES[s] for s in steps)
    for step in steps:
        budgets[step] = max(1, (budget - budgets["probe"] - budgets["spare"]) * SHARES[step] // wanted)
    return opts, steps, budgets


def run(cmd, seconds, out, env):
    """``cmd``'s exit status, its output into ``out``; 124 when stopped after ``seconds`` (as ``timeout -k``)."""
    with open(out, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        try:
            return proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return 124
        finally:  # timed out or Ctrl-C: TERM to the step's process group, KILL when it lives KILL_AFTER s more
            for sig in (signal.SIGTERM, signal.SIGKILL) if proc.returncode is None else ():
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=KILL_AFTER)
                    break
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break


def probe(cmd, seconds, env):
    """The GPU, from ``python3 -m unet_infer.speed --cuda``; None where there is no CUDA (said here);
    exit status 1 where the probe gives no answer."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds, env=env, stdin=subprocess.DEVNULL)
        status, lines = proc.returncode, (proc.stdout + proc.stderr).splitlines()
    except subprocess.TimeoutExpired:
        status, lines = 124, []
    said = next((line for line in lines if line.startswith(("cuda: ", "no CUDA here ("))), "")
    if said.startswith("no CUDA here ("):
        print(f"gpu_check: {said}; nothing to do")
        return None
    if not said or status:
        why = f"no answer within {seconds} s" if status == 124 else (lines[-1] if lines else "no output")
        print(f"gpu_check: error: cannot tell whether there is a CUDA GPU ({cmd[0]} -m unet_infer.speed --cuda, "
              f"exit status {status}: {why})", file=sys.stderr)
        raise SystemExit(1)
    return said[len("cuda: "):]


def check_tests(report):
    """``(problem or None, figures, [])`` from pytest's JUnit report: tests ran and none failed."""
    try:
        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
        took = float(suite.get("time", 0))
    except (OSError, ET.ParseError, AttributeError, ValueError) as exc:
        return f"no test report ({report}: {exc})", "", []
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    words = {"passed": "passed", "failures": "failed", "errors": "error", "skipped": "skipped"}
    shown = [f"{counts[k]} {w}" + ("s" if k == "errors" and counts[k] > 1 else "") for k, w in words.items() if counts[k]]
    figures = f"{', '.join(shown)} in {took:.2f}s" if counts["tests"] else "no tests ran"
    if counts["failures"] or counts["errors"] or not counts["passed"]:
        return f"the report counts {figures}", figures, []
    return None, figures, []


def check_main(work, options, gpu_name):
    """``(problem or None, figures, [])`` from the main job's files: its result (scored by the backend
    and precision asked for) and its run summary (on the GPU); figures: the driver's closing line."""
    asked = dict(arg.split("=", 1) for arg in options)
    bs, backend, precision = int(asked["bs"]), asked["backend"], asked["precision"]
    try:
        w = Workdir(work, run_tag(work, backend, precision))
        figures = result_lines(work, [bs], backend, precision, run=w.run)[-1]
        made = read_results(w.result_json(bs)).get("provenance") or {}
        machine = summ.machine(summ.read_summary(w.summary(bs))) or ""
    except (UserError, OSError, KeyError, ValueError) as exc:
        return f"no result ({exc})", "", []
    if (made.get("backend"), made.get("precision")) != (backend, precision):
        return f"{w.result_json(bs)} was scored by {made.get('backend')} {made.get('precision')}", figures, []
    if gpu_name not in machine:
        return f"{w.summary(bs)} ran on '{machine}', not the GPU ({gpu_name})", figures, []
    return None, figures, []


def table(section):
    """The rows of a section's table, each ``{column title: cell}``."""
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    titles = [cell.strip() for cell in lines[0].strip("|").split("|")] if lines else []
    return [dict(zip(titles, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]


def check_benchmark(markdown, before, gpu_name, configs, batchsizes):
    """``(problem or None, the section's name, its rows)``: the markdown (``before``: its text before)
    has a new section naming the GPU and a date, a row per config and batch size, every other kept."""
    try:
        sections = split_sections(Path(markdown).read_text(encoding="utf-8"))[1]
    except (OSError, UnicodeDecodeError) as exc:
        return f"{markdown}: cannot read it ({exc})", "", []
    old = split_sections(before)[1]
    new = [s for s in sections if s not in old]
    if not new:
        return "no section was written", "", []
    section = ([s for s in new if gpu_name in s.splitlines()[0]] or new)[-1]
    heading, rows = section.splitlines()[0][3:], table(section)
    figures = [f"{r['Backend']} {r['Precision']} bs {r['Batch size']}: {r['images/s']} images/s, p50 "
               f"{r['p50 ms/batch']} ms, p99 {r['p99 ms/batch']} ms per batch, {r['ms/image']} ms/image, loop "
               f"{r['loop']}" for r in rows if "p50 ms/batch" in r]
    have = {(r.get("Backend"), r.get("Precision", "").split(" ")[0], r.get("Batch size")) for r in rows}
    lacking = [f"{c.replace(':', ' ')} bs {b}" for c in configs for b in batchsizes
               if (*c.split(":"), str(b)) not in have]
    headings = [s.splitlines()[0] for s in sections]
    gone = [h[3:] for h in (s.splitlines()[0] for s in old) if h not in headings]
    problem = (f"the section '{heading}' does not name the GPU ({gpu_name})" if gpu_name not in heading else
               f"the section '{heading}' has no date" if not re.search(r"· [0-9]{4}-[0-9]{2}-[0-9]{2}$", heading) else
               f"the section '{heading}' has no row for {', '.join(lacking)}" if lacking else
               f"section '{gone[0]}' of {markdown} is gone" if gone else None)
    return problem, f"section '{heading}' in {markdown}", figures


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help", "help") for arg in argv):
        return print(HELP.format(**SHARES, spare=SPARE, per_row=max_seconds(SHARES["benchmark"], 9)), end="")
    opts, steps, budgets = parse(argv)
    env = repo_env()
    started = time.monotonic()
    gpu = probe([sys.executable, "-m", "unet_infer.speed", "--cuda"], budgets["probe"], env)
    if gpu is None:
        return 0
    gpu_name = gpu.split(" (")[0]
    work, markdown = Path(opts["workdir"]), Path(opts["markdown"]).absolute()
    try:
        (work / "steps").mkdir(parents=True, exist_ok=True)
        work = work.resolve()
        log = work / "gpu_check.log"
        log.write_text("", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{work}: cannot create the work folder or its log ({exc.strerror or exc})") from None

    def say(text, prefix="[gpu_check] "):
        print(prefix + text, flush=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(prefix + text + "\n")

    say(f"{time.strftime('%F %T')}: cuda: {gpu}")
    say(f"budget {opts['budget']} s: probe {budgets['probe']}" + "".join(f" + {s} {budgets[s]}" for s in steps)
        + f" + spare {budgets['spare']} s; log {log}")
    configs, batchsizes = opts["configs"].split(","), opts["bs"].split(",")
    report = work / "steps" / "tests.xml"
    report.unlink(missing_ok=True)
    before = markdown.read_text(encoding="utf-8") if markdown.is_file() else ""
    commands = {
        "tests": [sys.executable, "-m", "pytest", "-q", "-n", "0", "--durations=5", "--rootdir", str(ROOT),
                  f"--junitxml={report}",
                  *(str(ROOT / t) for t in opts["tests"].split(","))],
        "main": ["bash", str(ROOT / "scripts" / "run_all.sh"), *MAIN, f"workdir={work / 'main'}", "quiet=1"],
        "benchmark": ["bash", str(ROOT / "scripts" / "benchmark.sh"), f"configs={opts['configs']}", f"bs={opts['bs']}",
                      *BENCH, f"max_seconds={max_seconds(budgets.get('benchmark', 1), len(configs) * len(batchsizes))}",
                      f"workdir={work / 'bench'}", f"markdown={markdown}", "quiet=1"]}
    checks = {"tests": lambda: check_tests(report), "main": lambda: check_main(work / "main", MAIN, gpu_name),
              "benchmark": lambda: check_benchmark(markdown, before, gpu_name, configs, batchsizes)}
    summary, failed = [], False
    for step in steps:
        out, start = work / "steps" / f"{step}.log", time.monotonic()
        say(f"{step}: {' '.join(commands[step])} (budget {budgets[step]} s)")
        status = run(commands[step], budgets[step], out, env)
        wall = round(time.monotonic() - start)
        output = out.read_text(encoding="utf-8", errors="replace")
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"---- {step} output ({out}) ----\n{output}---- end of {step} output ----\n")
        problem, figures, rows = checks[step]()
        said = (f"timed out after {budgets[step]} s" if status == 124 else
                f"failed (exit status {status}) after {wall} s" if status else
                f"failed: {problem}" if problem else f"passed in {wall} s")
        failed = failed or bool(status or problem)
        say(f"{step}: {said}")
        for line in output.splitlines()[-8:] if status else ():
            say(line, prefix="    ")
        summary += [f"  {step}: {said}" + (f"; {figures}" if figures else ""), *(f"    {row}" for row in rows)]
    say(f"summary ({gpu}, {round(time.monotonic() - started)} s in all):")
    for line in summary:
        say(line, prefix="")
    if failed:
        say(f"some steps did not pass (their output: {work / 'steps'}/)")
        return 1
    say("every step passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
