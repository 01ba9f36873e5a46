"""Fixtures for the Argilla integration: a fabricated run folder and the real local stack (once per session)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icm_plugin.integrations.argilla.stack import LocalStack, default_home

FACTS = [
    # (group, question, claim, label icm gave, confidence)
    ("q1", "What is the capital of France?", "Paris", 1, 0.91),
    ("q1", "What is the capital of France?", "Lyon", 0, 0.88),
    ("q2", "How many legs does a spider have?", "Six", 1, 0.55),
    ("q2", "How many legs does a spider have?", "Eight", 1, 0.52),
    ("q3", "Which planet is closest to the sun?", "Venus", 0, 0.61),
    ("q3", "Which planet is closest to the sun?", "<b>Mercury</b> **bold?**", 0, 0.58),
]


def write_run(folder: Path, rows=FACTS, model: str = "tiny-model", conflicts: list | None = None) -> Path:
    """A run folder in the format `icm label` writes (examples, labels, conflicts, report, config)."""
    folder.mkdir(parents=True, exist_ok=True)
    examples, labels = [], []
    for n, (group, question, claim, label, conf) in enumerate(rows):
        ex_id = f"{group}-{n}"
        examples.append({"id": ex_id, "question": question, "choice": claim, "consistency_id": group})
        labels.append({"id": ex_id, "label": label, "confidence": conf})
    if conflicts is None:
        conflicts = [
            {"iteration": 3, "rule": "exactly_one", "ids": ["q2-2", "q2-3"], "labels_before": {"q2-2": 1, "q2-3": 1},
             "labels_after": {"q2-2": 1, "q2-3": 0}, "resolution": "repaired"},
            {"iteration": 9, "rule": "exactly_one", "ids": ["q2-2", "q2-3"], "labels_before": {"q2-2": 1, "q2-3": 1},
             "labels_after": {"q2-2": 1, "q2-3": 1}, "resolution": "unresolved"},
            {"iteration": 7, "rule": "exactly_one", "ids": ["q3-4", "q3-5"], "labels_before": {"q3-4": 0, "q3-5": 0},
             "labels_after": {"q3-4": 0, "q3-5": None}, "resolution": "kept"},
        ]
    (folder / "examples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    (folder / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    (folder / "conflicts.jsonl").write_text("".join(json.dumps(c) + "\n" for c in conflicts))
    (folder / "report.json").write_text(json.dumps({"task": "facts", "model": model, "n": len(rows), "rule": "exactly_one"}))
    (folder / "config.json").write_text(json.dumps({"task": "facts", "model": model, "seed": 0}))
    return folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


@pytest.fixture
def make_run():
    """write_run(folder, rows=FACTS, model=..., conflicts=...) for tests that need their own run."""
    return write_run


@pytest.fixture
def icm_cli():
    """icm(*args, env=None) -> CompletedProcess: the command line in a child process."""
    return icm


def icm(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `icm` command line in a child process (as a user would), capturing its output."""
    return subprocess.run([sys.executable, "-m", "icm_plugin.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="session")
def argilla_stack(tmp_path_factory: pytest.TempPathFactory):
    """The real local stack, started once per session with `icm argilla up` in a temporary home (the server
    venv is shared: $ICM_ARGILLA_VENV or the default home's) and stopped with `icm argilla down`."""
    home = tmp_path_factory.mktemp("argilla-home")
    venv = os.environ.get("ICM_ARGILLA_VENV") or str(default_home() / "venv")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICM_ARGILLA_VENV", venv)  # `icm argilla ...` children and LocalStack(home) use one venv
        t0 = time.monotonic()
        up = icm("argilla", "up", "--home", str(home))
        assert up.returncode == 0, up.stdout + up.stderr
        print(f"\n`icm argilla up` took {time.monotonic() - t0:.1f} s")
        stack = LocalStack(home)
        assert stack.status() is not None
        yield stack, stack.status()
        down = icm("argilla", "down", "--home", str(home))
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture
def client(argilla_stack):
    from icm_plugin.integrations.argilla.client import connect

    stack, _ = argilla_stack
    info = stack.status()  # read again: a test may have restarted the stack
    return connect(info.url, info.credentials.api_key)


@pytest.fixture
def server_args(argilla_stack) -> list[str]:
    stack, _ = argilla_stack
    info = stack.status()
    # the = form, as a user should pass a key that could begin with "-" (keys made before make_secret may)
    return ["--api-url", info.url, f"--api-key={info.credentials.api_key}"]


@pytest.fixture
def dataset_name(request) -> str:
    """A dataset name unique to the test (Argilla names: letters, digits, - and _)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60].strip("-")
