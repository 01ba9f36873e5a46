"""Makes the stock ``lm_eval`` CLI (and ``TaskManager()``) find the ``icm_*`` tasks with no ``--include_path``.

lm-eval 0.4.x has no task entry point: ``TaskManager`` indexes its own ``lm_eval/tasks`` plus the folders given
as ``include_path``. The package installs a one-line ``icm_plugin_lmeval.pth`` into site-packages that calls
:func:`install` at interpreter start. ``install`` only puts a finder on ``sys.meta_path``; nothing is imported
until a program imports ``lm_eval.tasks``, and right after that module runs, ``TaskManager.__init__`` is wrapped
to add :func:`tasks_dir` to ``include_path`` - the public, documented argument - before lm-eval's own code runs.

Why this survives: nothing is written into lm-eval's folder (upgrading or reinstalling lm-eval keeps working, and
uninstalling this package removes the .pth with it); an lm-eval whose ``TaskManager`` no longer takes
``include_path`` is left untouched (the tasks then need ``--include_path $(python -m icm_plugin.integrations.lmeval path)``).
Any failure here is swallowed: a broken hook must never break the interpreter or lm-eval.

In the ``lm_eval`` command itself, an ICMError that escapes (a data file missing, the hub offline: raised by
our task hooks, which lm-eval does not catch) is printed as its one-line message, without the traceback
around it; every other exception keeps Python's usual report.

This module runs at every interpreter start: it imports nothing beyond the standard library and the
import-light ``icm_plugin`` package.
"""

from __future__ import annotations

import functools
import importlib.abc
import inspect
import sys
from pathlib import Path
from typing import Any

TARGET = "lm_eval.tasks"
_MARK = "__icm_plugin_tasks__"


def tasks_dir() -> Path:
    """The folder of the ``icm_*`` task YAMLs: the installed copy, or the checkout's top-level ``tasks/``."""
    here = Path(__file__).resolve().parent
    installed = here / "tasks"  # where the wheel puts the repository's tasks/
    if installed.is_dir():
        return installed
    return here.parents[1] / "tasks"  # source checkout / editable install


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def wrap_task_manager(task_manager_cls: type) -> bool:
    """Wrap ``TaskManager.__init__`` so ``include_path`` also holds :func:`tasks_dir`; True when wrapped.

    Our folder goes first among the include paths (after lm-eval's own tasks), so a user's ``--include_path``
    can still override an ``icm_*`` task. ``include_defaults=False`` is respected (nothing added).
    """
    original = task_manager_cls.__init__
    if getattr(original, _MARK, False):
        return True
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        return False
    if "include_path" not in signature.parameters:
        return False

    @functools.wraps(original)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
            if bound.arguments.get("include_defaults", True) is not False:
                ours = str(tasks_dir())
                paths = _as_list(bound.arguments.get("include_path"))
                if ours not in {str(p) for p in paths}:
                    bound.arguments["include_path"] = [ours, *paths]
            args, kwargs = bound.args[1:], bound.kwargs
        except Exception:  # noqa: BLE001 - leave lm-eval's call exactly as it was
            pass
        original(self, *args, **kwargs)

    setattr(__init__, _MARK, True)
    task_manager_cls.__init__ = __init__
    return True


def _register(module: Any) -> None:
    try:
        task_manager_cls = getattr(module, "TaskManager", None)
        if isinstance(task_manager_cls, type):
            wrap_task_manager(task_manager_cls)
        if _is_lm_eval_cli():
            install_excepthook()
    except Exception:  # noqa: BLE001
        pass


def _is_lm_eval_cli() -> bool:
    """True in the ``lm_eval`` / ``lm-eval`` console script and in ``python -m lm_eval``."""
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.name in ("lm_eval", "lm-eval") or (argv0.name == "__main__.py" and argv0.parent.name == "lm_eval")


def install_excepthook() -> None:
    """Print an uncaught ICMError as ``lm_eval: error: MESSAGE`` (no traceback); others as before."""
    previous = sys.excepthook
    if getattr(previous, _MARK, False):
        return

    def hook(kind: type, value: BaseException, tb: Any) -> None:
        if any(c.__name__ == "ICMError" and c.__module__ == "icm_plugin.errors" for c in kind.__mro__):
            print(f"lm_eval: error: {value}", file=sys.stderr)
            return
        previous(kind, value, tb)

    setattr(hook, _MARK, True)
    sys.excepthook = hook


class _ThenRegister(importlib.abc.Loader):
    """Runs the real loader, then registers; the module keeps its real loader afterwards."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _register(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``lm_eval.tasks`` is imported, it wraps the real spec's loader once."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _ThenRegister(spec.loader)
        return spec


def install() -> None:
    """Called by the installed ``.pth`` at interpreter start; safe to call again. Never raises."""
    try:
        if TARGET in sys.modules:
            _register(sys.modules[TARGET])
        elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
            sys.meta_path.insert(0, _RegisterOnImport())
    except Exception:  # noqa: BLE001
        pass
