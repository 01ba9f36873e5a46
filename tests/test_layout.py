"""The package's architecture holds: every module imports, the import graph of icm_plugin has no cycle, nothing
below the CLI sees argparse, and no module outgrows one idea."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "icm_plugin"
# modules that only run as scripts: in the Argilla server's venv, or `python -m` (runs on import)
FOREIGN = {"icm_plugin.argilla.server_main", "icm_plugin.lmeval.__main__"}
CLI_MODULES = {"icm_plugin.cli", "icm_plugin.argilla.cli", "icm_plugin.lmeval.cli", "icm_plugin.bench_cli"}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imports_of(name: str) -> set[str]:
    """icm_plugin modules that ``name`` imports anywhere in its body (module level and inside functions)."""
    path = PACKAGE.parent / (name.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / name.replace(".", "/") / "__init__.py"
    known = set(module_names())
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("icm_plugin"):
            for alias in node.names:  # `from icm_plugin.x import y` where y is a module counts as importing y
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("icm_plugin")}
    # a package's own __init__ is imported on the way to any of its modules; that is not an edge we draw
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


@pytest.mark.parametrize("name", [n for n in module_names() if n not in FOREIGN])
def test_every_module_imports(name):
    importlib.import_module(name)


def test_import_graph_has_no_cycle():
    graph = {name: imports_of(name) for name in module_names()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_only_the_cli_modules_see_argparse_namespaces():
    offenders = []
    for name in module_names():
        if name in CLI_MODULES:
            continue
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE.parent / name.replace(".", "/") / "__init__.py"
        text = path.read_text(encoding="utf-8")
        offenders += [f"{name}: {m.group(0)}" for m in re.finditer(r"Namespace|getattr\(args", text)]
    assert not offenders, offenders


@pytest.mark.parametrize("path", sorted(p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")))
def test_no_module_over_about_400_lines(path):
    n = len((PACKAGE.parent / path).read_text(encoding="utf-8").splitlines())
    assert n <= 420, f"{path}: {n} lines"
