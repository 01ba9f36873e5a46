"""The README's Python example end to end on the real stack: label (tiny model), push with the client passed in,
a reviewer answers, pull, re-run with the answer clamped; no argparse anywhere."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import argilla as rg
import pytest

from icm_plugin.integrations.argilla.client import find_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_python_api import readme_python_blocks, with_model  # noqa: E402

pytestmark = pytest.mark.argilla


def test_readme_example_pushes_pulls_and_reruns(client, argilla_stack, dataset_name, tiny_model_dir, tmp_path,
                                                monkeypatch):
    def no_argparse(*_a, **_k):
        raise AssertionError("the Python API used argparse")

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", no_argparse)
    monkeypatch.chdir(tmp_path)
    info = argilla_stack[1]
    label_block, argilla_block = readme_python_blocks()
    argilla_block = (argilla_block.replace("http://localhost:6900", info.url)
                     .replace("argilla.apikey", info.credentials.api_key).replace('"facts-review"', repr(dataset_name)))
    push_part, rest = argilla_block.split("answers =", 1)
    scope: dict = {}
    exec(compile(with_model(label_block, tiny_model_dir), "README.md", "exec"), scope)
    exec(compile(push_part, "README.md", "exec"), scope)
    run = scope["run"]
    ds = find_dataset(client, dataset_name, "argilla")
    assert {r.id for r in ds.records} == set(run.labels)
    assert find_dataset(client, dataset_name + "-conflicts", "argilla") is not None
    assert scope["pushed"].url.endswith("/annotation-mode")

    ex_id = sorted(run.labels)[0]
    human = 1 - run.labels[ex_id]  # the reviewer disagrees with ICM
    record = next(r for r in ds.records if r.id == ex_id)
    record.responses.add(rg.Response("label", ["False", "True"][human], user_id=client.me.id, status="submitted"))
    ds.records.log([record])

    exec(compile("answers =" + rest, "README.md", "exec"), scope)
    assert scope["answers"] == {ex_id: human}
    reviewed = scope["reviewed"]
    assert reviewed.path == Path("runs/facts-reviewed") and reviewed.labels[ex_id] == human
    assert reviewed.report["clamp"]["clamped"] == 1
