"""BENCHMARKS.md: its header, one section per machine, model and date (keyed by its ``## `` line),
and the merge that replaces a section of the same heading and keeps every other one."""

import importlib.metadata
import sys
from pathlib import Path

from .. import backends
from ..cli import UserError
from ..parallel import cpu_count

TITLE = "# UNet inference benchmarks"
HEADER = f"""{TITLE}

Made by `scripts/benchmark.sh` (`python3 -m unet_infer.speed`): our ais_bench-compatible runner
in pure-inference mode, as `python3 -m ais_bench --model=UNet_bs8.om --loop=100 --batchsize=8`,
over backend x precision x batch size.

- **images/s** = 1000 x batch size / mean compute time of one batch (ms), as ais_bench reports
  its throughput: the model's compute only; host time (making the data, copies to and from the
  device) is not counted. **p50** and **p99**: median and 99th percentile of the compute time of
  one batch over the timed runs (`loop`, after 1 untimed warm-up run). **ms/image** = mean
  compute time of one batch / batch size.
- `loop` below the requested count: cut by `--max-seconds` so that one row takes about that long.
- The model for speed is the full ModelZoo UNet (width 64, 31.0 M parameters, 477.6 GFLOP per
  572x572 image); random weights run at the same speed as trained ones.
- Each section is one machine, model and date; running the benchmark again on the same machine,
  model and date replaces its section and keeps the others.

For comparison, the seed guide's figures (ais_bench, Ascend .om models compiled by atc, whose
default precision for inference is fp16; UNet at 572x572, images/s):

| Chip | bs 1 | bs 4 | bs 8 | bs 16 | bs 32 | bs 64 |
|---|---|---|---|---|---|---|
| Ascend 310P3 | 75.06 | 71.29 | 68.53 | 67.71 | 65.50 | 49.02 |
| Ascend 310B1 | 12.78 | 11.75 | 11.56 | 11.29 | 11.18 | NA |

An older version of the guide, bs 1: Ascend 310 44.40, 310P 78.64, NVIDIA T4 38.45 images/s.
"""


COLUMNS = {  # a table column's title: the cell it shows for a row (a dict of runs.make_row)
    "Backend": lambda r: r["backend"],
    "Precision": lambda r: r["precision"] + (f" (ran {r['ran']})" if r.get("ran") not in (None, r["precision"])
                                             else ""),
    "Batch size": lambda r: r["batchsize"],
    "images/s": lambda r: f"{r['fps']:.2f}",
    "p50 ms/batch": lambda r: f"{r['p50']:.2f}",
    "p99 ms/batch": lambda r: f"{r['p99']:.2f}",
    "ms/image": lambda r: f"{r['ms_per_image']:.2f}",
    "loop": lambda r: r["loop"],
    "Machine": lambda r: r["machine"],
    "Date": lambda r: r["date"],
    "images/s range": lambda r: f"{r['fps_min']:.2f}-{r['fps_max']:.2f}" if "fps_min" in r else "",
    "rounds": lambda r: r.get("rounds", 1),
    "load 1 min": lambda r: "" if r.get("load") is None else f"{r['load']:.1f}" + (
        f" (max {r['load_max']:.1f})" if r.get("load_max") not in (None, r["load"]) else ""),
    "bare OpenVINO images/s": lambda r: f"{r['bare_fps']:.2f}" if r.get("bare_fps") else "",
    "runner / bare": lambda r: f"{r['vs_bare']:.2f}" if r.get("vs_bare") else "",
}
ROUNDS_NOTE = ("images/s, p50, p99 and ms/image: medians of {rounds} interleaved round(s) (every row once per "
               "round, {warmup} warm-up run(s) each); images/s range: lowest-highest round; load 1 min: the "
               "1-minute load average when each run started (median, max): these CPUs may be shared. "
               "bare OpenVINO: a plain OpenVINO session (core.compile_model with its defaults, the row's "
               "precision hint) on the same model, run after the runner in each round "
               "(python3 -m unet_infer.speed.bare).")


def section_heading(machine, model, date):
    """The key of a section: its ``## `` line."""
    return f"## {machine} · {model} · {date}"


def render_section(heading, rows, model_long, commands, software, plot_link=None, failures=(), note=None):
    """The markdown of one section (heading, model, software, commands, note, table, failures, plot)."""
    lines = [heading, "", f"Model: {model_long}.", "", f"Software: {software}.", "", "Command:", "", "```bash"]
    lines += list(commands) + ["```", ""] + ([note, ""] if note else [])
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(cell(row)).replace("|", "\\|").replace("\n", " ") for cell in COLUMNS.values())
              + " |" for row in rows]
    if failures:
        lines += ["", "Failed runs (no row): " + "; ".join(
            f"{f['backend']} {f['precision']} bs {f['batchsize']} (exit status {f['status']})" for f in failures) + "."]
    if plot_link:
        lines += ["", f"![images/s against batch size]({plot_link})"]
    return "\n".join(lines) + "\n"


def split_sections(text):
    """``(header, [section, ...])``: a section starts at a ``## `` line outside a fenced code block."""
    header, sections, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if line.startswith("## ") and not fenced:
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            header.append(line)
    return "\n".join(header), ["\n".join(s).rstrip() + "\n" for s in sections]


def merge_section(text, section):
    """``text`` (a BENCHMARKS.md, or "") under our header, with ``section`` in place of its namesake or appended."""
    heading = section.splitlines()[0].rstrip()
    kept = [section if old.splitlines()[0].rstrip() == heading else old for old in split_sections(text)[1]]
    if section not in kept:
        kept.append(section)
    return HEADER.rstrip() + "\n\n" + "\n".join(s.rstrip() + "\n" for s in kept)


def check_markdown(path):
    """``path`` can take a section: not a folder, readable when it exists (before any run)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a markdown file")
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None


def software_line(configs, threads):
    """``Python 3.x, onnxruntime 1.y, torch 2.z, N CPU threads``: the packages of the configs' backends."""
    parts = [f"Python {sys.version.split()[0]}"]
    for cls in dict.fromkeys(backends.get_backend(name) for name, _ in configs):
        if not cls.package:
            parts.append(f"{cls.name} backend")
            continue
        try:
            parts.append(f"{cls.package} {importlib.metadata.version(cls.package)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(cls.package)
    parts.append(f"{threads or cpu_count()} CPU threads")
    return ", ".join(parts)
