"""Without the argilla extra (`pip install icm-plugin`, no `[argilla]`), every Argilla command of `icm` ends with one
line naming `pip install "icm-plugin[argilla]"`, exit code 2, no traceback. Checked in a fresh venv where the
packages only that extra brings (argilla, httpx, httpx-retries, ...) are really not installed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from venv_helpers import can_import, copy_checkout, extra_only_distributions, fresh_venv, pip

INSTALL_LINE = 'pip install "icm-plugin[argilla]"'


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory) -> Path:
    """The python of a venv holding a regular install of the checkout and none of the argilla extra's packages."""
    tmp = tmp_path_factory.mktemp("no-argilla-extra")
    hidden = extra_only_distributions("icm-plugin", "argilla")
    assert {"argilla", "httpx", "httpx-retries"} <= hidden, hidden
    python = fresh_venv(tmp, hide=hidden)
    pip(python, "install", "-q", "--no-deps", "--no-build-isolation", str(copy_checkout(tmp / "src")))
    for module in ("argilla", "httpx", "httpx_retries"):
        assert not can_import(python, module), f"{module} is importable: the venv does not lack the extra"
    assert can_import(python, "icm_plugin.cli.main") and can_import(python, "torch")
    return python


def _icm(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([str(python), "-m", "icm_plugin.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _commands(tmp_path: Path, model: Path) -> list[list[str]]:
    home = str(tmp_path / "argilla-home")
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.jsonl").write_text(json.dumps({"id": "a", "label": 1, "confidence": 0.9}) + "\n")
    label = ["label", "--task", "facts", "--model", str(model), "--limit", "4", "--iterations", "2",
             "--out", str(tmp_path / "out")]
    return [
        ["argilla", "up", "--home", home],
        ["argilla", "status", "--home", home],
        ["argilla", "down", "--home", home],
        ["push", str(run), "--dataset", "facts-review"],
        ["pull", "--dataset", "facts-review", "--out", str(tmp_path / "human.jsonl")],
        [*label, "--push", "facts-review"],
        [*label, "--argilla-dataset", "reviews", "--question", "verdict"],
    ]


def test_every_argilla_command_ends_with_one_line_naming_the_extra(plain_install, tmp_path, tiny_model_dir):
    for args in _commands(tmp_path, tiny_model_dir):
        proc = _icm(plain_install, tmp_path, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith("icm: error: ") and INSTALL_LINE in lines[0], (args, lines)
    # nothing was labelled before the error: `--push` is checked before the search starts
    assert not (tmp_path / "out" / "labels.jsonl").exists()


def test_commands_without_argilla_still_run(plain_install, tmp_path):
    proc = _icm(plain_install, tmp_path, "--help")
    assert proc.returncode == 0 and "argilla" in proc.stdout, proc.stderr
