"""Helpers for the lm-eval tests (not a test file): run the stock CLI in a subprocess, read its results table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "icm"


def run_lm_eval(args: list[str], *, python: str = sys.executable, env: dict[str, str] | None = None,
                cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m lm_eval ARGS`` (the same entry point as the ``lm_eval`` script), offline, on CPU."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.run([python, "-m", "lm_eval", *args], env=full_env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def results_table(stdout: str) -> dict[tuple[str, str], float]:
    """``{(task, metric): value}`` from the markdown table(s) lm-eval prints; empty when there is none."""
    table: dict[tuple[str, str], float] = {}
    task = None
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 9 or not line.startswith("|") or cells[1] in ("Tasks", "Groups") or cells[2].startswith("-"):
            continue  # not a table row, a header or the |---| rule
        if cells[1]:
            task = cells[1].removeprefix("- ").strip()
        try:
            table[(task, cells[5])] = float(cells[7])
        except ValueError:
            continue
    return table


def results_json(output_path: Path) -> dict:
    """The ``results`` block of the newest results_*.json under ``--output_path``."""
    files = sorted(output_path.rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    assert files, f"no results json under {output_path}"
    return json.loads(files[-1].read_text())["results"]
