"""The package's shape: small modules within one line budget, no import cycles, no logic inside the shell scripts, and
the driver and the GPU check short."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unet_infer"
MAX_LINES = 400


def modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name, path, known):
    """The package modules ``name`` imports (at any depth of its code: lazy imports count too).
    ``from . import local`` imports the module ``local``, not its package's ``__init__``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            # ``from pkg import sub`` imports the module pkg.sub; ``from pkg import name``, pkg itself
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph():
    """``{module: the package modules it imports}``, lazy imports included; the package's own
    ``__init__`` (no code) is left out."""
    known = modules()
    graph = {name: imports_of(name, path, known) - {"unet_infer"} for name, path in known.items()}
    graph.pop("unet_infer", None)
    return graph


def cycles_of(graph):
    """The import cycles of ``graph``: each strongly connected set of two or more modules (Tarjan's
    algorithm, iterative), sorted; a module that imports itself is not a cycle."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next((e for e in edges if e in graph), None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


MAX_PACKAGE_LINES = 11_000  # the whole package: a new capability pays for its lines with old weight


def test_the_package_stays_within_its_line_budget():
    total = sum(len(path.read_text().splitlines()) for path in modules().values())
    assert total <= MAX_PACKAGE_LINES, f"unet_infer/: {total} lines, at most {MAX_PACKAGE_LINES}"


def test_cycles_of_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "d"}, "e": set()}
    assert cycles_of(graph) == [["a", "b", "c"]]
    assert cycles_of({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    """Every module, lazy imports inside functions included: a cycle between two modules of one
    subpackage counts as much as one between subpackages."""
    graph = import_graph()
    cycles = cycles_of(graph)
    assert not cycles, [{m: sorted(graph[m] & set(c)) for m in c} for c in cycles]


HEREDOC = re.compile(r"""(?<!<)<<-?\s*(['"]?)(\w+)\1""")  # a here-document (a ``<<<`` here-string is not)
INTERPRETER = r"""(?:python3?|\$PYTHON|\$\{PYTHON[^}]*\}|"\$PYTHON"|"\$\{PYTHON[^}]*\}"|perl|ruby|node|bash|sh)"""
INLINE_PROGRAM = re.compile(INTERPRETER + r"""\s+(-c|-e|-)(?=\s|$)(.*)""")
TEXT_TOOL = re.compile(r"""\b(awk|sed)\b((?:\s+-[\w-]+)*)\s*(?:'([^']*)'|(.*))""")
MAX_TEXT_PROGRAM = 60  # characters of one awk or sed program: a pattern and an action, no more


def shell_code(text):
    """``(code lines, the command each here-document feeds)`` of a shell script: comment lines and
    here-document bodies (help texts) left out."""
    code, feeds, end = [], [], None
    for line in text.splitlines():
        if end is not None:
            end = None if line.strip() == end else end
            continue
        if line.lstrip().startswith("#"):
            continue
        match = HEREDOC.search(line)
        if match:
            end = match.group(2)
            feeds.append(re.split(r"\||;|&&|\$\(", line[:match.start()])[-1].strip())
        code.append(line)
    return code, feeds


def logic_in_shell(text):
    """What of ``text`` is a program in another language, hidden in a shell script: a here-document
    fed to anything but ``cat`` (a help text is fine), an inline program (``python3 -c``, ``-e``, a
    script on stdin ``python3 -``; ``-c "import x"``, an install check, is fine), an ``awk`` or
    ``sed`` program longer than one short line or read from a file (``-f``). Parsing flags, calling
    the package's modules and choosing among them stay the shell's job."""
    code, feeds = shell_code(text)
    found = [f"here-document fed to {feed!r}" for feed in feeds if feed.split()[:1] != ["cat"]]
    for line in code:
        for match in INLINE_PROGRAM.finditer(line):
            if not re.match(r"""\s*["']import [\w.]+["']""", match.group(2)):
                found.append(f"inline program: {line.strip()}")
        for match in TEXT_TOOL.finditer(line):
            tool, flags, program = match.group(1), match.group(2).split(), match.group(3)
            if "-f" in flags or program is None or len(program) > MAX_TEXT_PROGRAM:
                found.append(f"{tool} program over one short line: {line.strip()}")
    return found


def test_logic_in_shell_finds_hidden_programs():
    assert logic_in_shell("cat <<'USAGE'\npython3 -c 'print(1)'\nUSAGE\nx=$(tr , ' ' <<<\"$a\")\n") == []
    assert logic_in_shell('"$PYTHON" -c "import onnx" || die\n# python3 -c "x = 1"\n') == []
    assert logic_in_shell("awk '!seen[$0]++' f | sed 's/^/  /'\n") == []
    for bad in ("python3 - <<'EOF'\nprint(1)\nEOF\n", "$PYTHON <<PY\nx\nPY\n", 'python3 -c "print(1)"\n',
                "\"$PYTHON\" - < f.py\n", "perl -e 'print 1'\n", "awk -f prog.awk f\n", "awk '\n{ s += $1 }'\n",
                "awk '{ for (i = 1; i <= NF; i++) s[$i] += 1 } END { for (k in s) print k, s[k] }' f\n"):
        assert logic_in_shell(bad), bad


def test_the_shell_scripts_hold_no_logic():
    found = {script.name: hits for script in sorted((ROOT / "scripts").glob("*.sh"))
             if (hits := logic_in_shell(script.read_text()))}
    assert not found, found


# The shell scripts that only chain the package's commands stay short: the driver one function per
# stage in the guide's order, the GPU check a shim over python3 -m unet_infer.gpu_check.
SCRIPT_LINES = {"run_all.sh": 250, "gpu_check.sh": 40}


@pytest.mark.parametrize("name", sorted(SCRIPT_LINES))
def test_the_driver_and_the_gpu_check_stay_short(name):
    lines = len((ROOT / "scripts" / name).read_text().splitlines())
    assert lines <= SCRIPT_LINES[name], f"scripts/{name}: {lines} lines, at most {SCRIPT_LINES[name]}"
