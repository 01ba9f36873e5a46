"""The README's Argilla loop as a new user runs it: a fresh venv without the extra's packages, `pip install
".[argilla]"` (which must bring exactly what was missing), then `icm argilla up`, `icm label --push`, a review in
Argilla, `icm pull`, the clamped re-run with `--push`, and `icm argilla down`, all in that venv (tiny model,
8 claims instead of 40)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import argilla as rg
import pytest
from venv_helpers import can_import, copy_checkout, extra_only_distributions, fresh_venv, pip

from icm_plugin.integrations.argilla.client import find_dataset
from icm_plugin.integrations.argilla.stack import LocalStack, default_home

pytestmark = pytest.mark.argilla
DATASET = "facts-review"


def _install_with_the_extra(tmp: Path) -> Path:
    hidden = extra_only_distributions("icm-plugin", "argilla")
    python = fresh_venv(tmp, hide=hidden)
    assert not can_import(python, "argilla")
    src = copy_checkout(tmp / "src")
    # what pip would install must be only what the extra adds (nothing of the borrowed packages is replaced)
    report = pip(python, "install", "--dry-run", "--quiet", "--report", "-", "--no-build-isolation", f"{src}[argilla]")
    planned = {item["metadata"]["name"].lower().replace("_", "-") for item in json.loads(report.stdout)["install"]}
    assert planned - {"icm-plugin"} <= hidden, planned - hidden
    pip(python, "install", "--quiet", "--no-build-isolation", f"{src}[argilla]")
    assert can_import(python, "argilla") and can_import(python, "httpx_retries")
    return python


def test_readme_argilla_loop_in_a_fresh_venv_with_the_extra(tmp_path, tiny_model_dir):
    python = _install_with_the_extra(tmp_path)
    home = tmp_path / "argilla-home"
    env = {**os.environ, "PYTHONPATH": "", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "",
           "ICM_ARGILLA_HOME": str(home),
           "ICM_ARGILLA_VENV": os.environ.get("ICM_ARGILLA_VENV") or str(default_home() / "venv")}
    for key in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):  # the README's loop uses the local stack
        env.pop(key, None)

    def icm(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(python), "-m", "icm_plugin.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (args, proc.stdout[-2000:], proc.stderr[-3000:])
        return proc

    label = ["label", "--task", "facts", "--model", str(tiny_model_dir), "--limit", "8", "--iterations", "8"]
    icm("argilla", "up")  # 1.
    try:
        first = icm(*label, "--out", "runs/facts", "--push", DATASET)  # 2.
        assert f"pushed 8 records to {DATASET!r}" in first.stdout
        ours = {r["id"]: r["label"] for r in map(json.loads, (tmp_path / "runs/facts/labels.jsonl").read_text().splitlines())}

        info = LocalStack(home).status()  # 3. a reviewer disagrees with ICM on one record
        client = rg.Argilla(api_url=info.url, api_key=info.credentials.api_key)
        ds = find_dataset(client, DATASET, "argilla")
        ex_id = sorted(ours)[0]
        human = 1 - ours[ex_id]
        record = next(r for r in ds.records if r.id == ex_id)
        record.responses.add(rg.Response("label", ["False", "True"][human], user_id=client.me.id, status="submitted"))
        ds.records.log([record])

        icm("pull", "--dataset", DATASET, "--out", "human.jsonl")  # 4.
        assert json.loads((tmp_path / "human.jsonl").read_text()) == {"id": ex_id, "label": human}
        icm(*label, "--clamp", "human.jsonl", "--compare-to", "runs/facts", "--out", "runs/facts-clamped",
            "--push", DATASET)
        again = {r["id"]: r["label"] for r in
                 map(json.loads, (tmp_path / "runs/facts-clamped/labels.jsonl").read_text().splitlines())}
        assert again[ex_id] == human
        report = json.loads((tmp_path / "runs/facts-clamped/report.json").read_text())
        assert report["clamp"]["clamped"] == 1 and report["clamp"]["clamped_differs_from_previous"] == 1
        records = {r.id: r for r in find_dataset(client, DATASET, "argilla").records(with_suggestions=True)}
        assert len(records) == 8 and records[ex_id].suggestions["label"].value == ["False", "True"][human]
    finally:
        down = subprocess.run([str(python), "-m", "icm_plugin.cli.main", "argilla", "down"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
