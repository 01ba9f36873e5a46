"""The README's Python example runs as written (tiny model for the alias), and labels as `icm label` does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def with_model(code: str, model_dir: Path) -> str:
    return code.replace('"gemma-3-270m"', repr(str(model_dir)))


def test_readme_example_labels_and_fits_without_argparse(tiny_model_dir, tmp_path, monkeypatch):
    import argparse

    def no_argparse(*_a, **_k):
        raise AssertionError("the Python API used argparse")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", no_argparse)
    monkeypatch.chdir(tmp_path)
    code = with_model(readme_python_blocks()[0], tiny_model_dir)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    run, search = scope["run"], scope["search"]
    out = tmp_path / "runs" / "facts-notebook"
    assert run.path == Path("runs/facts-notebook") and (out / "report.json").is_file()
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert run.labels == {r["id"]: r["label"] for r in rows} and len(rows) == len(run.examples) >= 8
    assert run.report == json.loads((out / "report.json").read_text())
    assert len(scope["dataset"]) == len(rows) and set(scope["dataset"]["label"]) <= {0, 1}
    assert len(search.labels_) == len(scope["examples"]) and set(search.labels_) <= {0, 1}


def test_python_api_writes_the_run_folder_the_cli_writes(tiny_model_dir, tmp_path):
    import icm_plugin as icm

    run = icm.label(icm.LabelJob(task="facts", limit=8, out=tmp_path / "api",
                                 model=icm.ModelSpec(str(tiny_model_dir)),
                                 config=icm.ICMConfig(seed=0, iterations=24)))
    cli = subprocess.run([sys.executable, "-m", "icm_plugin.cli.main", "label", "--task", "facts", "--limit", "8",
                          "--model", str(tiny_model_dir), "--seed", "0", "--iterations", "24",
                          "--out", str(tmp_path / "cli")], capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-2000:]
    for name in ("labels.jsonl", "examples.jsonl", "config.json", "conflicts.jsonl"):
        assert (tmp_path / "api" / name).read_text() == (tmp_path / "cli" / name).read_text(), name
    assert run.labels == {r["id"]: r["label"] for r in map(json.loads, (tmp_path / "cli" / "labels.jsonl")
                                                             .read_text().splitlines())}
