"""The package's shape: small modules, no import cycles, no logic inside the shell scripts."""

import ast
import re
from pathlib import Path

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
    """The package modules ``name`` imports (at any depth of its code: lazy imports count too)."""
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
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def unit(name):
    """The unit a cycle is counted between: a subpackage as a whole, or a top-level module."""
    parts = name.split(".")
    return ".".join(parts[:2])


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_no_import_cycle_between_modules_and_subpackages():
    known = modules()
    graph = {}
    for name, path in known.items():
        graph.setdefault(unit(name), set()).update(
            unit(t) for t in imports_of(name, path, known) if unit(t) != unit(name))
    graph.pop("unet_infer", None)
    for edges in graph.values():
        edges.discard("unet_infer")  # the package's own __init__ holds no code

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(u for u in graph if u in reach(u))
    assert not cycles, {u: sorted(graph[u]) for u in cycles}


def test_the_shell_scripts_hold_no_python():
    for script in sorted((ROOT / "scripts").glob("*.sh")):
        text = script.read_text()
        assert "<<'PY'" not in text and '<<"PY"' not in text and "<<PY" not in text, script
        for call in re.findall(r'(?:python3?|\$PYTHON|\$\{PYTHON[^}]*\}|"\$PYTHON")\s+-c\s+(.+)', text):
            assert re.fullmatch(r"""["']import [\w.]+["'].*""", call.strip()), (script, call)
