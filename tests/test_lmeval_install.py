"""The contract of issue 5: after `pip install .` and after `pip install -e .`, the stock `lm_eval` finds and runs
the icm_* tasks with no --include_path; `pip uninstall` leaves lm-eval working. Each case installs a copy of the
working tree into a fresh venv that borrows this interpreter's packages (no reinstall of torch/lm-eval, no network)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from lmeval_helpers import DATA, REPO, results_table, run_lm_eval
from venv_helpers import copy_checkout, fresh_venv, pip, site_packages

SETUP = REPO / "setup.py"
pytestmark = [
    pytest.mark.skipif(not SETUP.is_file() or "icm_plugin_lmeval.pth" not in SETUP.read_text(),
                       reason="packaging for the lm-eval hook not applied yet (icm_plugin/integrations/lmeval/PACKAGING.md)"),
    pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}"),
]


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


def test_regular_install_then_uninstall(tmp_path, tiny_model_dir):
    src = copy_checkout(tmp_path / "src")
    python = fresh_venv(tmp_path)
    pip(python, "install", "-q", "--no-deps", "--no-build-isolation", str(src))
    site = site_packages(python)
    assert (site / "icm_plugin_lmeval.pth").is_file()
    assert (site / "icm_plugin" / "core" / "tasks" / "icm_alpaca.yaml").is_file()
    assert "Citation" in (site / "icm_plugin" / "core" / "tasks" / "README.md").read_text()  # lm-eval task-folder style
    shutil.rmtree(src)  # nothing may come from the source tree
    _check_stock_commands(python, tmp_path, tiny_model_dir, site / "icm_plugin" / "core" / "tasks")

    pip(python, "uninstall", "-y", "icm-plugin")
    assert not (site / "icm_plugin_lmeval.pth").exists() and not (site / "icm_plugin").exists()
    after = _stock(python, tmp_path, "validate", "--tasks", "hellaswag")
    assert after.returncode == 0 and not after.stderr.count("Traceback"), after.stdout + after.stderr


def test_editable_install(tmp_path, tiny_model_dir):
    src = copy_checkout(tmp_path / "src")
    python = fresh_venv(tmp_path)
    pip(python, "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(src))
    assert (site_packages(python) / "icm_plugin_lmeval.pth").is_file()
    _check_stock_commands(python, tmp_path, tiny_model_dir, src / "tasks")
