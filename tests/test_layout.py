"""The package's architecture holds: every module imports, imports only go down the layers (and the import
graph of icm_plugin has no cycle), the package keeps at most 8 top-level modules, the public API imports,
nothing below the CLI sees argparse, and no module outgrows one idea."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "icm_plugin"
# the layers, bottom to top (docs/layout.md): a module imports its own layer and the layers below it, never
# one above. Each is a top-level module or sub-package of icm_plugin; icm_plugin/__init__.py (the public API,
# whose names load on first use) sits above them all, and no module imports from it.
LAYERS = ["errors", "core", "scoring", "method", "integrations", "apps", "cli"]
MAX_TOP_LEVEL = 8  # .py files and sub-packages directly in icm_plugin/, __init__.py included
PACKAGE_DATA = {"data"}  # folders of package data, not modules
PUBLIC_API = {"ICM", "Example", "ICMConfig", "ICMError", "LabelHook", "LabelJob", "ModelSpec", "RunFolder",
              "get_task", "label", "load_examples"}
# modules that only run as scripts: in the Argilla server's venv, or `python -m` (runs on import)
FOREIGN = {"icm_plugin.integrations.argilla.server_main", "icm_plugin.integrations.lmeval.__main__"}
CLI_MODULES = {"icm_plugin.cli.main", "icm_plugin.cli.bench_cli", "icm_plugin.integrations.argilla.cli",
               "icm_plugin.integrations.lmeval.cli"}
# a string that names a module (importlib, __import__, a registry's "module:Class") is an import too
MODULE_STRING = re.compile(r"icm_plugin(?:\.\w+)+(?::\w+)?")


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def source_path(name: str) -> Path:
    path = PACKAGE.parent / (name.replace(".", "/") + ".py")
    return path if path.exists() else PACKAGE.parent / name.replace(".", "/") / "__init__.py"


def owning_module(dotted: str, known: set[str]) -> str:
    """The longest known module that prefixes ``dotted`` (for ``icm_plugin.core.tasks.Task``: ``tasks``)."""
    parts = dotted.split(".")
    prefixes = (".".join(parts[:k]) for k in range(len(parts), 0, -1))
    return next((p for p in prefixes if p in known), dotted)


def imports_of(name: str, strings: bool = False) -> set[str]:
    """icm_plugin modules that ``name`` imports anywhere in its body (module level and inside functions); with
    ``strings``, also the modules that a string naming a module points at."""
    known = set(module_names())
    found = set()
    for node in ast.walk(ast.parse(source_path(name).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("icm_plugin"):
            for alias in node.names:  # `from icm_plugin.x import y` where y is a module counts as importing y
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("icm_plugin")}
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str):
            if MODULE_STRING.fullmatch(node.value):
                found.add(owning_module(node.value.split(":")[0], known))
    # a package's own __init__ is imported on the way to any of its modules; that is not an edge we draw
    # (importing from the icm_plugin package itself is, though: it is the public API, on top of every layer)
    return {m for m in found
            if m in known and m != name and (m == "icm_plugin" or not name.startswith(m + "."))}


def layer_of(name: str) -> int:
    """The index of ``name``'s layer in LAYERS (icm_plugin itself: above them all)."""
    parts = name.split(".")
    if len(parts) == 1:
        return len(LAYERS)
    assert parts[1] in LAYERS, f"{name}: icm_plugin.{parts[1]} is in no layer (tests/test_layout.py LAYERS)"
    return LAYERS.index(parts[1])


def layer_name(name: str) -> str:
    return LAYERS[layer_of(name)] if layer_of(name) < len(LAYERS) else "the public API"


def top_level_modules() -> list[str]:
    entries = []
    for path in sorted(PACKAGE.iterdir()):
        if path.is_file() and path.suffix == ".py":
            entries.append(path.name)
        elif path.is_dir() and path.name != "__pycache__" and path.name not in PACKAGE_DATA \
                and any(path.rglob("*.py")):
            entries.append(path.name + "/")
    return entries


@pytest.mark.parametrize("name", [n for n in module_names() if n not in FOREIGN])
def test_every_module_imports(name):
    importlib.import_module(name)


def test_at_most_8_top_level_modules():
    entries = top_level_modules()
    assert len(entries) <= MAX_TOP_LEVEL, f"{len(entries)} top-level modules in icm_plugin/: {entries}"


def test_every_top_level_module_is_a_layer():
    layers = {e.removesuffix("/").removesuffix(".py") for e in top_level_modules()} - {"__init__"}
    assert layers == set(LAYERS), f"not a layer: {sorted(layers - set(LAYERS))}; " \
                                  f"no such module: {sorted(set(LAYERS) - layers)}"


def test_imports_only_go_down_the_layers():
    upward = []
    for name in module_names():
        for imported in sorted(imports_of(name, strings=True)):
            if layer_of(imported) > layer_of(name):
                upward.append(f"{name} ({layer_name(name)}) imports {imported} ({layer_name(imported)})")
    assert not upward, "imports that go up the layers:\n" + "\n".join(upward)


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


def test_the_public_api_imports():
    import icm_plugin
    from icm_plugin import ICM, ICMConfig, LabelJob, ModelSpec, label  # noqa: F401

    assert PUBLIC_API <= set(icm_plugin.__all__)
    missing = [name for name in icm_plugin.__all__ if getattr(icm_plugin, name, None) is None]
    assert not missing, missing


def test_only_the_cli_modules_see_argparse_namespaces():
    offenders = []
    for name in module_names():
        if name in CLI_MODULES:
            continue
        text = source_path(name).read_text(encoding="utf-8")
        offenders += [f"{name}: {m.group(0)}" for m in re.finditer(r"Namespace|getattr\(args", text)]
    assert not offenders, offenders


@pytest.mark.parametrize("path", sorted(p.relative_to(PACKAGE.parent).as_posix()
                                       for p in PACKAGE.rglob("*.py")))
def test_no_module_over_about_400_lines(path):
    n = len((PACKAGE.parent / path).read_text(encoding="utf-8").splitlines())
    assert n <= 420, f"{path}: {n} lines"
