"""Helpers for the install tests (not a test file): fresh venvs that borrow this interpreter's packages, a copy of
the checkout, pip acting on such a venv, and the packages that only an extra of icm-plugin brings.

A fresh venv sees this interpreter's site-packages (torch, lm-eval, setuptools) as plain path entries, so nothing
is reinstalled and nothing is downloaded; their .pth files (an editable icm-plugin there, say) are not run, so
only the venv's own install of icm-plugin counts. ``hide`` builds the borrowed folder as a farm of links that
leaves some distributions out entirely: in that venv they are not installed, as after a plain ``pip install``.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "runs", ".venv", ".pytest_cache",
                                ".ruff_cache", "test-artifacts")


def copy_checkout(dst: Path) -> Path:
    """A copy of the working tree (no venv, caches or run folders) at ``dst``."""
    shutil.copytree(REPO, dst, ignore=IGNORE)
    return dst


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _requirement_closure(roots: Iterable[Requirement]) -> set[str]:
    """Canonical names of the installed distributions that ``roots`` need, transitively (extras followed)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.requires(req.name) or []
        except md.PackageNotFoundError:
            continue  # not installed here (a marker-excluded platform dependency): nothing to hide or keep
        for line in requires:
            sub = Requirement(line)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return {k.split("[")[0] for k in seen}


def extra_only_distributions(project: str, extra: str) -> set[str]:
    """Distributions that ``pip install "project[extra]"`` brings and a plain ``pip install project`` does not."""
    base = _requirement_closure([Requirement(project)])
    return _requirement_closure([Requirement(f"{project}[{extra}]")]) - base


def _farm(folder: Path, hide: set[str]) -> Path:
    """``folder`` filled with links to every entry of this interpreter's site-packages except the files of the
    distributions in ``hide`` (canonical names)."""
    hidden: set[str] = set()
    for name in hide:
        dist = md.distribution(name)
        hidden |= {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
    folder.mkdir(parents=True)
    for root in site.getsitepackages():
        for entry in Path(root).iterdir():
            if entry.name not in hidden and not (folder / entry.name).exists():
                (folder / entry.name).symlink_to(entry)
    return folder


def fresh_venv(tmp_path: Path, hide: Iterable[str] = ()) -> Path:
    """A fresh venv (its python) that borrows this interpreter's packages, less the distributions in ``hide``."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    hide = {canonicalize_name(h) for h in hide}
    borrowed = [str(_farm(tmp_path / "borrowed-site", hide))] if hide else site.getsitepackages()
    (site_packages(python) / "_parent_site.pth").write_text("".join(f"{p}\n" for p in borrowed))
    return python


def pip(python: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """This interpreter's pip acting on the venv of ``python`` (setuptools comes from the borrowed packages)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", *args],
                          env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def can_import(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0
