"""What README.md and docs/*.md tell the user to type is what the tools take.

The commands are read from the documents themselves: every line of a fenced ```bash block
(continuation lines joined, comments dropped) and every inline `code` span of a table that starts
like a command (``scripts/``, ``python3``, ``pip``, ``ray``, ``atc``). For each one:

- the tool exists: a script of ``scripts/``, a stage script at the top level, a module of the
  package, or one of the few external tools the documents name (``EXTERNAL``);
- its options parse, as the tool itself parses them: a Python tool is run in this process up to
  its own ``parse_args`` (``argparse`` is stopped there, so nothing runs); a shell script's
  ``key=value`` / ``--key`` options are checked against the ones its ``--help`` lists (and, where
  that help says which package command it passes them to, e.g. ``(--configs)``, parsed by that
  command's parser too); a script that hands all its arguments to a package command
  (``exec ... -m unet_infer.X "$@"``) is checked as that command;
- a command that uses the user's data (Carvana, the guide's ``UNet.pth``, photos, a cluster) says
  so: a ``# needs ...`` comment on its line, or "need(s) the user's ..." in the paragraph just
  before its block or table. Its options are checked all the same;
- any other command finds its inputs: in the repository, under ``work/`` (after the driver's
  run), or written by an earlier command of its block;
- a path under ``work/`` is one the driver writes (``unet_infer.workdir``, the backends' artefacts).

Inline code in running text that starts like a command (mostly a tool's name) must name a tool
that exists. A few cheap ones really run (every ``--help``, ``python3 -m unet_infer.backends``). And no document
holds a placeholder (``TODO``, ``TBD``, ``XXX``, ``FIXME``, or a bare ``ALL_CAPS_WORD`` outside code).
"""

import argparse
import contextlib
import importlib.util
import io
import os
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Tools the documents name that this repository does not hold (the Ascend tools, Ray's CLI, pip,
# the shell's cd, mkdir, export and chmod, ssh, the test runner, the guide's onnxsim command).
EXTERNAL = {"pip", "ray", "atc", "npu-smi", "cd", "mkdir", "export", "chmod", "ssh"}
EXTERNAL_MODULES = {"ais_bench", "onnxsim", "pytest"}
COMMAND_START = re.compile(r"^(scripts/|python3? |pip |ray |atc |npu-smi)")
# The user's own data, as the documents spell it: a command naming one must say that it needs it.
USER_DATA = re.compile(r"(^|[\s=/.])(carvana\b|UNet\.pth|photos/|car1\.jpg|/shared/|\.\./shared/|hostA)",
                       re.IGNORECASE)
NEEDS_COMMENT = re.compile(r"\s#\s*needs\b", re.IGNORECASE)
NEEDS_SENTENCE = re.compile(r"\bneeds? the user's\b", re.IGNORECASE)


@dataclass
class Command:
    doc: str
    line: int
    text: str
    argv: list
    marked: bool
    cwd: str = "."
    block: int = 0  # the commands of one code block (or table) share a number

    def __str__(self):
        return f"{self.doc}:{self.line}: {self.text}"


# ---- reading the documents ----------------------------------------------------------------------

def _paragraph_before(lines, index):
    """The text of the paragraph that ends right before line ``index`` (blank lines skipped)."""
    i = index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    out = []
    while i >= 0 and lines[i].strip() and not lines[i].lstrip().startswith("```"):
        out.append(lines[i])
        i -= 1
    return " ".join(reversed(out))


def _code_spans(row):
    """Inline code spans of a markdown table row (``\\|`` inside one is a ``|``)."""
    return [span.replace("\\|", "|") for span in re.findall(r"`([^`]+)`", row)]


def _command(doc, number, text, marked, cwd=".", block=0):
    try:
        argv = shlex.split(text, comments=True)
    except ValueError as exc:
        raise AssertionError(f"{doc}:{number}: cannot split {text!r}: {exc}") from None
    return Command(doc, number, text, argv, marked or bool(NEEDS_COMMENT.search(text)), cwd, block)


def _block_commands(doc, lines, start, end, marked, block):
    """The commands of the bash block ``lines[start:end]``; ``cd DIR`` moves the ones after it."""
    found, cwd, i = [], ".", start
    while i < end:
        number, text = i + 1, lines[i].strip()
        while text.endswith("\\") and i + 1 < end:
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        if not text or text.startswith("#"):
            continue
        cmd = _command(doc, number, text, marked, cwd, block)
        if cmd.argv and cmd.argv[0] == "cd" and len(cmd.argv) == 2:
            cwd = str(Path(cwd) / cmd.argv[1])
        found.append(cmd)
    return found


def doc_commands(path):
    """Every command of one document, in order."""
    doc, lines = path.relative_to(ROOT).as_posix(), path.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            lang, end = stripped[3:].strip(), i + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            if lang in ("bash", "sh", "shell"):
                marked = bool(NEEDS_SENTENCE.search(_paragraph_before(lines, i)))
                found += _block_commands(doc, lines, i + 1, end, marked, block=i)
            i = end + 1
            continue
        if stripped.startswith("|"):
            table_start = i
            while i < len(lines) and lines[i].strip().startswith("|"):
                i += 1
            marked = bool(NEEDS_SENTENCE.search(_paragraph_before(lines, table_start)))
            for n in range(table_start, i):
                for span in _code_spans(lines[n]):
                    if COMMAND_START.match(span):
                        found.append(_command(doc, n + 1, span, marked, block=table_start))
            continue
        i += 1
    return found


def prose_commands(path):
    """Inline `code` spans of running text (outside code blocks and tables) that start like a
    command: mostly a tool's name, sometimes a flag of it (``--device 0,1``), so only the tool is
    checked, and the cheap whole ones run."""
    doc, found, in_block = path.relative_to(ROOT).as_posix(), [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            in_block = not in_block
        elif not in_block and not line.strip().startswith("|"):
            found += [_command(doc, number, span, False, block=-number) for span in _code_spans(line)
                      if COMMAND_START.match(span) and "*" not in span and not span.endswith("/")]
    return found


def all_commands():
    return [cmd for path in DOCS for cmd in doc_commands(path)]


COMMANDS = all_commands()
PROSE = [cmd for path in DOCS for cmd in prose_commands(path)]


def _ids(commands):
    return [f"{c.doc}:{c.line}:{' '.join(c.argv[:3])}" for c in commands]


def _tool_argv(cmd):
    """The command without leading ``VAR=value`` assignments."""
    argv = list(cmd.argv)
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        argv.pop(0)
    return argv


# ---- a Python tool's own parser, run up to parse_args -------------------------------------------

class _Parsed(BaseException):
    """Raised from inside the tool once argparse has accepted its arguments (nothing else ran)."""

    def __init__(self, parser, namespace, extras=()):
        super().__init__("parsed")
        self.parser, self.namespace, self.extras = parser, namespace, list(extras)


@contextlib.contextmanager
def _stop_after_parsing():
    real_args, real_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    depth = [0]

    def parse_args(self, args=None, namespace=None):
        depth[0] += 1
        try:
            result = real_args(self, args, namespace)
        finally:
            depth[0] -= 1
        raise _Parsed(self, result)

    def parse_known_args(self, args=None, namespace=None):
        if depth[0]:  # argparse's own call (parse_args, a subparser): pass through
            return real_known(self, args, namespace)
        depth[0] += 1
        try:
            result = real_known(self, args, namespace)
        finally:
            depth[0] -= 1
        raise _Parsed(self, *result)

    argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = real_args, real_known


def parse_python_tool(target, args, kind="module"):
    """Run ``python3 -m target args`` (or ``python3 target args``) here up to its argument parsing.

    Returns ``(status, message, parser)``: status 0 when its parser accepted the arguments (or printed
    its --help), else argparse's exit status with what it printed. A tool that parses with
    ``parse_known_args`` (the runner: it hands the rest to ais_bench for an .om) is held to the
    arguments it knows."""
    err, out = io.StringIO(), io.StringIO()
    saved_argv = sys.argv
    sys.argv = [str(target), *args]
    try:
        with _stop_after_parsing(), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules"
            if kind == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=False)
            else:
                runpy.run_path(str(target), run_name="__main__")
    except _Parsed as parsed:
        if parsed.extras:
            return 2, f"unrecognized arguments: {' '.join(parsed.extras)}", parsed.parser
        return 0, "", parsed.parser
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return code, (err.getvalue() or out.getvalue()).strip(), None
    finally:
        sys.argv = saved_argv
    return 1, f"{target} ended without parsing its arguments with argparse", None


# ---- a shell script's options, as its --help lists them -----------------------------------------

@lru_cache(maxsize=None)
def script_help(script):
    proc = subprocess.run(["bash", str(ROOT / script), "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, f"{script} --help: status {proc.returncode}: {proc.stderr[-500:]}"
    return proc.stdout


def wrapped_module(script):
    """The package command a script hands all its arguments to (``exec ... -m unet_infer.X "$@"``)."""
    found = re.search(r'^[^#\n]*\bexec\b[^\n]*-m (unet_infer[\w.]*) "\$@"\s*$', (ROOT / script).read_text(), re.M)
    return found.group(1) if found else None


def help_options(text):
    """``{key: (style, flag)}`` from a help text's option list: style ``=`` for ``key=value``
    options, ``--`` for ``--key`` ones; flag: the package option a ``(--flag)`` at the line's end names."""
    found = {}
    for line in text.splitlines():
        if re.match(r"^examples?:", line, re.IGNORECASE):
            break
        m = re.match(r"^ {2,4}(--)?([a-z][a-z0-9_]*)(=\S*)?(\s|$)", line)
        if not m or (not m.group(1) and not m.group(3)):
            continue
        flag = re.search(r"\((--[a-z][a-z0-9-]*)\)\s*$", line)
        found.setdefault(m.group(2), ("--" if m.group(1) else "=", flag.group(1) if flag else None))
    return found


def split_script_args(args, options):
    """``[(key, value)]`` of a script's arguments; ``(None, arg)`` for one that is not an option."""
    dashed = any(style == "--" for style, _ in options.values())
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg.startswith("--") and dashed:
            key, sep, value = arg[2:].partition("=")
            if not sep and i < len(args):
                value, i = args[i], i + 1
            out.append((key, value))
        elif "=" in arg and not arg.startswith("-"):
            out.append(tuple(arg.split("=", 1)))
        else:
            out.append((None, arg))
    return out


def check_script(script, args):
    """Problems with ``scripts/X args``, as the script's --help describes its options."""
    wrapped = wrapped_module(script)
    if wrapped:  # a wrapper around a package command: that command's parser decides
        status, message, _ = parse_python_tool(wrapped, args)
        return [] if status == 0 else [f"{wrapped} refused the arguments: {message}"]
    text = script_help(script)
    if any(a in ("-h", "--help") for a in args):
        return []
    options, problems, mapped = help_options(text), [], []
    for key, value in split_script_args(args, options):
        if key is None:
            problems.append(f"{value!r} is not an option of {script} (its --help lists {sorted(options)})")
        elif key not in options:
            problems.append(f"{key}= is not an option of {script} (its --help lists {sorted(options)})")
        elif options[key][1]:
            mapped.append((options[key][1], value))
    target = re.search(r"passed to python3 -m (unet_infer[\w.]*)", text)
    if target and mapped and not problems:
        problems += _check_mapped(target.group(1), mapped)
    return problems


def _check_mapped(module, mapped):
    """Parse the script's ``key=value`` options as the flags its help says they become."""
    status, message, parser = parse_python_tool(module, [])
    if parser is None:
        return [f"{module} with no arguments: {message}"]
    argv = []
    for flag, value in mapped:
        action = parser._option_string_actions.get(flag)
        if action is None:
            return [f"{module} has no {flag} (the script's --help says it passes one)"]
        if action.nargs != 0:
            argv += [flag, value]
    status, message, _ = parse_python_tool(module, argv)
    return [] if status == 0 else [f"{module} {' '.join(argv)}: {message}"]


# ---- the checks -------------------------------------------------------------------------------

def tool_problems(cmd):
    """What is wrong with one command: a missing tool, or options its tool does not take."""
    argv = _tool_argv(cmd)
    if not argv:
        return [f"{cmd}: no command"]
    tool, args = argv[0], argv[1:]
    if tool in ("python3", "python"):
        return _python_problems(cmd, args)
    if tool.startswith("scripts/"):
        path = ROOT / cmd.cwd / tool
        if not path.is_file():
            return [f"{tool}: no such script"]
        return check_script(path.relative_to(ROOT).as_posix(), args)
    if tool in EXTERNAL:
        return []
    return [f"{tool}: neither a script of this repository nor a known external tool ({sorted(EXTERNAL)})"]


def is_package_module(name):
    """Whether ``python3 -m name`` names a module of this package."""
    if name.split(".")[0] != "unet_infer":
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _python_problems(cmd, args):
    if not args:
        return []
    if args[0] == "-c":
        try:
            compile(args[1], "<python3 -c>", "exec")
        except SyntaxError as exc:
            return [f"python3 -c: {exc}"]
        return []
    if args[0] == "-m":
        module, rest = args[1], args[2:]
        if module.split(".")[0] in EXTERNAL_MODULES:
            return []
        if not is_package_module(module):
            return [f"python3 -m {module}: no such module of the package"]
        status, message, _ = parse_python_tool(module, rest)
        return [] if status == 0 else [f"python3 -m {module} refused the arguments: {message}"]
    script = ROOT / cmd.cwd / args[0]
    if not script.is_file():
        return [f"python3 {args[0]}: no such script (run from the repository root)"]
    status, message, _ = parse_python_tool(script, args[1:], kind="path")
    return [] if status == 0 else [f"python3 {args[0]} refused the arguments: {message}"]


def test_the_documents_hold_commands():
    docs = {cmd.doc for cmd in COMMANDS}
    assert {"README.md", "docs/openvino.md", "docs/cluster.md", "docs/predict.md"} <= docs, docs
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("cmd", COMMANDS, ids=_ids(COMMANDS))
def test_each_command_names_a_tool_that_takes_its_options(cmd):
    problems = tool_problems(cmd)
    assert not problems, f"{cmd}\n" + "\n".join(problems)


@pytest.mark.parametrize("cmd", PROSE, ids=_ids(PROSE))
def test_each_tool_named_in_the_text_exists(cmd):
    tool = _tool_argv(cmd)
    if tool[:2] == ["python3", "-m"]:
        module = tool[2]
        assert module.split(".")[0] in EXTERNAL_MODULES or is_package_module(module), str(cmd)
    elif tool[0].startswith("scripts/"):
        assert (ROOT / tool[0]).is_file(), str(cmd)
    else:
        assert tool[0] in EXTERNAL, str(cmd)


@lru_cache(maxsize=None)
def driver_paths():
    """The names under ``work/`` that ``scripts/run_all.sh`` writes (its default work folder)."""
    from unet_infer import workdir
    from unet_infer.backends import all_backends
    w = workdir.Workdir("work")
    names = {path.name for path in (w.sample, w.prep, w.onnx, w.simplified, w.results, w.report,
                                     w.result_txt(), w.result_json())}
    for cls in all_backends():
        if cls.quantized_name:
            names.add(cls.quantized_name)
        for bs in range(1, 65):
            names |= {w.result_txt(bs).name, w.result_json(bs).name}
            names |= {cls.artefact(p, bs) for p in cls.precisions} - {None}
    return names


FILE_SUFFIX = re.compile(r"\.(onnx|xml|om|pth|bin|json|txt|csv|png|jpg|gif)$")
OUTPUT_OPTION = re.compile(r"out|result|save|summary|profile|rle|markdown|plot|workdir|masks")


def path_values(cmd):
    """``(option, path)`` for every argument of a command that names a file or folder, the path
    relative to the repository root (``cd`` in its block followed); option ``None``: positional."""
    argv = _tool_argv(cmd)
    if argv[:2] in (["python3", "-c"], ["python", "-c"]):
        return []
    if argv[0] in ("mkdir", "cd"):  # every argument a folder: what mkdir makes, where cd goes
        role = "output" if argv[0] == "mkdir" else None
        return [(role, os.path.normpath(os.path.join(cmd.cwd, a))) for a in argv[1:] if not a.startswith("-")]
    found, args, i = [], argv[1:], 0
    while i < len(args):
        arg, option = args[i], None
        i += 1
        if arg.startswith("-"):
            option, sep, value = arg.lstrip("-").partition("=")
            if not sep:
                if i < len(args) and not args[i].startswith("-"):
                    value, i = args[i], i + 1
                else:
                    continue
        elif "=" in arg:
            option, value = arg.split("=", 1)
        else:
            value = arg
        if "://" in value or not ("/" in value or FILE_SUFFIX.search(value)):
            continue
        path = value if value.startswith("/") else os.path.normpath(os.path.join(cmd.cwd, value))
        found.append((option, path))
    return found


def wrong_work_paths(commands):
    wrong = []
    for cmd in commands:
        for _, path in path_values(cmd):
            parts = Path(path).parts
            if len(parts) > 1 and parts[0] == "work" and parts[1] not in driver_paths():
                wrong.append(f"{cmd}: {path}")
    return wrong


def test_paths_under_the_work_folder_are_what_the_driver_writes():
    wrong = wrong_work_paths(COMMANDS)
    assert not wrong, "\n".join(wrong)


def _made_before(path, earlier):
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in earlier)


def missing_inputs(commands):
    """Inputs of commands that do not say they need the user's data and that are neither in the
    repository, nor under work/ (the driver's), nor written by an earlier command of their block."""
    missing, earlier, block = [], [], None
    for cmd in commands:
        if (cmd.doc, cmd.block) != block:
            block, earlier = (cmd.doc, cmd.block), []
        paths = path_values(cmd)
        if not cmd.marked:
            for option, path in paths:
                if option and OUTPUT_OPTION.search(option):
                    continue
                if not (path.startswith("work/") or (ROOT / path).exists() or _made_before(path, earlier)):
                    missing.append(f"{cmd}: {path}")
        earlier += [path for _, path in paths]
    return missing


def test_a_command_not_marked_finds_its_inputs():
    missing = missing_inputs(COMMANDS)
    assert not missing, "mark these as needing the user's data, or give paths that exist:\n" + "\n".join(missing)


def test_a_command_on_the_users_data_says_so():
    unmarked = [str(cmd) for cmd in COMMANDS if USER_DATA.search(cmd.text) and not cmd.marked]
    assert not unmarked, "mark these with '# needs ...' or a 'Needs ...' sentence before:\n" + "\n".join(unmarked)


def _runs_here(cmd):
    argv = _tool_argv(cmd)
    if cmd.marked or cmd.cwd != "." or not argv:
        return False
    if "--help" in argv or "-h" in argv:
        return argv[0].startswith("scripts/") or argv[:2] == ["python3", "-m"] and argv[2].startswith("unet_infer")
    return argv[:3] == ["python3", "-m", "unet_infer.backends"]


RUNNABLE = [cmd for cmd in COMMANDS + PROSE if _runs_here(cmd)]


@pytest.mark.parametrize("cmd", RUNNABLE, ids=_ids(RUNNABLE))
def test_the_cheap_commands_run_as_written(cmd):
    argv = _tool_argv(cmd)
    argv = ["bash", *argv] if argv[0].startswith("scripts/") else [sys.executable, *argv[1:]]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, f"{cmd}: status {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip()


def test_some_commands_run_here():
    tools = {" ".join(_tool_argv(cmd)[:3]) for cmd in RUNNABLE}
    assert "python3 -m unet_infer.backends" in tools
    assert any(t.startswith("scripts/run_all.sh") for t in tools), tools


# ---- placeholders -------------------------------------------------------------------------------

PLACEHOLDER_WORDS = re.compile(r"\b(TODO|TBD|XXX+|FIXME)\b")
CAPS_WORD = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b")


def _prose(text):
    """The text outside code blocks and inline code spans."""
    text = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def placeholders(text):
    return PLACEHOLDER_WORDS.findall(text) + CAPS_WORD.findall(_prose(text))


@pytest.mark.parametrize("path", DOCS, ids=[p.name for p in DOCS])
def test_no_document_holds_a_placeholder(path):
    found = placeholders(path.read_text())
    assert not found, f"{path.relative_to(ROOT)}: {found}"


def test_the_placeholder_check_sees_a_placeholder():
    assert placeholders("| The tests | `python3 -m pytest -q tests` | TESTS_FIGURE |")
    assert placeholders("IoU TBD")
    assert not placeholders("OpenVINO's `INFERENCE_PRECISION_HINT` and `PERF_COUNT`")


def test_the_option_check_sees_a_wrong_option():
    assert tool_problems(_command("x", 1, "scripts/run_all.sh bs=8 batch=8", False))
    assert tool_problems(_command("x", 1, "python3 -m unet_infer.bench --model=m.onnx --loops=3", False))
    assert tool_problems(_command("x", 1, "python3 -m unet_infer.nothing", False))
    assert tool_problems(_command("x", 1, "python3 -m unet_infer.nothing.more", False))
    assert tool_problems(_command("x", 1, "scripts/benchmark.sh configs=...", False))
    assert not tool_problems(_command("x", 1, "scripts/run_all.sh bs=8 backend=openvino", False))


def test_the_path_checks_see_a_wrong_path():
    bench = "python3 -m unet_infer.bench --model={} --loop=20 --profile=profile.json"
    assert missing_inputs([_command("x", 1, bench.format("UNet_int8_bs1.xml"), False)])
    assert not missing_inputs([_command("x", 1, bench.format("work/UNet_int8_bs1.xml"), False)])
    assert not missing_inputs([_command("x", 1, bench.format("UNet_int8_bs1.xml"), True)])
    made = [_command("x", 1, "mkdir -p by_hand", False), _command("x", 2, bench.format("by_hand/m.xml"), False)]
    assert not missing_inputs(made)
    assert wrong_work_paths([_command("x", 1, bench.format("work/UNet_int8_bs1.onnx.xml"), False)])
    assert not wrong_work_paths([_command("x", 1, bench.format("work/UNet_int8_bs1.xml"), False)])


def test_the_marks_are_seen(tmp_path, monkeypatch):
    lines = ["It needs the user's data: Carvana.", "", "```bash", "scripts/run_all.sh data=./carvana", "```",
             "", "```bash", "scripts/run_all.sh data=./carvana   # needs Carvana", "scripts/run_all.sh bs=8", "```"]
    monkeypatch.setitem(globals(), "ROOT", tmp_path)  # a document of the test's own, not in the repository
    path = tmp_path / "marks.md"
    path.write_text("\n".join(lines))
    assert [cmd.marked for cmd in doc_commands(path)] == [True, True, False]
