"""The contract of issue 5: after `pip install .` and after `pip install -e .`, the stock `lm_eval` finds and runs
the icm_* tasks with no --include_path; `pip uninstall` leaves lm-eval working. Each case installs a copy of the
working tree into a fresh venv that borrows this interpreter's packages (no reinstall of torch/lm-eval, no network)."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from lmeval_helpers import DATA, REPO, results_table, run_lm_eval

SETUP = REPO / "setup.py"
pytestmark = [
    pytest.mark.skipif(not SETUP.is_file() or "icm_plugin_lmeval.pth" not in SETUP.read_text(),
                       reason="packaging for the lm-eval hook not applied yet (icm_plugin/lmeval/PACKAGING.md)"),
    pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}"),
]
_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", "build", "dist", "runs", ".venv", ".pytest_cache",
                                 ".ruff_cache", "test-artifacts")


def _venv(tmp_path: Path) -> Path:
    """A fresh venv that also sees this interpreter's site-packages (torch, lm-eval, setuptools) as plain path
    entries: their .pth files (an editable icm-plugin there, say) are not run, so only the venv's own install counts."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = _site_packages(python)
    (own / "_parent_site.pth").write_text("".join(f"{p}\n" for p in site.getsitepackages()))
    return python


def _pip(python: Path, *args: str) -> None:
    # the test interpreter's pip, acting on the venv; setuptools comes from the system site-packages
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check", *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _stock(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"ICM_DATA_DIR": str(DATA), "PYTHONPATH": ""}
    return run_lm_eval(list(args), python=str(python), env=env, cwd=cwd)


def _check_stock_commands(python: Path, cwd: Path, model: Path, expected_root: Path) -> None:
    listing = _stock(python, cwd, "ls", "tasks")
    assert listing.returncode == 0, listing.stderr[-2000:]
    rows = [line for line in listing.stdout.splitlines() if "|icm_alpaca " in line]
    assert rows and str(expected_root) in rows[0], rows
    for name in ("icm_truthfulqa", "icm_gsm8k", "icm_facts"):
        assert f"|{name} " in listing.stdout
    validate = _stock(python, cwd, "validate", "--tasks", "icm")
    assert validate.returncode == 0 and "All tasks found and valid" in validate.stdout, validate.stdout + validate.stderr
    run = _stock(python, cwd, "--model", "hf", "--model_args", f"pretrained={model}", "--tasks", "icm_alpaca",
                 "--limit", "4")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    table = results_table(run.stdout)
    assert 0.0 <= table[("icm_alpaca", "acc")] <= 1.0 and 0.0 <= table[("icm_alpaca", "balanced_acc")] <= 1.0


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def test_regular_install_then_uninstall(tmp_path, tiny_model_dir):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    python = _venv(tmp_path)
    _pip(python, "install", "-q", "--no-deps", "--no-build-isolation", str(src))
    site = _site_packages(python)
    assert (site / "icm_plugin_lmeval.pth").is_file()
    assert (site / "icm_plugin" / "lmeval" / "tasks" / "icm_alpaca.yaml").is_file()
    shutil.rmtree(src)  # nothing may come from the source tree
    _check_stock_commands(python, tmp_path, tiny_model_dir, site / "icm_plugin" / "lmeval" / "tasks")

    _pip(python, "uninstall", "-y", "icm-plugin")
    assert not (site / "icm_plugin_lmeval.pth").exists() and not (site / "icm_plugin").exists()
    after = _stock(python, tmp_path, "validate", "--tasks", "hellaswag")
    assert after.returncode == 0 and not after.stderr.count("Traceback"), after.stdout + after.stderr


def test_editable_install(tmp_path, tiny_model_dir):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    python = _venv(tmp_path)
    _pip(python, "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(src))
    assert (_site_packages(python) / "icm_plugin_lmeval.pth").is_file()
    _check_stock_commands(python, tmp_path, tiny_model_dir, src / "tasks")
