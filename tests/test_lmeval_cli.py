"""The stock lm-eval CLI (in a subprocess) on every icm_* task with the tiny random model: zero-shot, golden
many-shot and many-shot from a labels file. Discovery without --include_path is test_lmeval_install.py's job."""

from __future__ import annotations

import json

import pytest
from lmeval_helpers import DATA, results_json, results_table, run_lm_eval

from icm_plugin.integrations.lmeval import split_pool, tasks_dir
from icm_plugin.integrations.lmeval.sources import load_task_examples

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}")
TASKS = ("icm_truthfulqa", "icm_gsm8k", "icm_alpaca", "icm_facts")


def _run(model, tmp_path, *extra: str):
    out = tmp_path / "results"
    proc = run_lm_eval(["--model", "hf", "--model_args", f"pretrained={model}", "--include_path", str(tasks_dir()),
                        "--batch_size", "8", "--output_path", str(out), *extra],
                       env={"ICM_DATA_DIR": str(DATA)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return results_table(proc.stdout), results_json(out)


def _assert_scores(table, results, tasks):
    for task in tasks:
        for metric in ("acc", "balanced_acc"):
            assert 0.0 <= table[(task, metric)] <= 1.0, (task, metric, table)
            assert 0.0 <= results[task][f"{metric},none"] <= 1.0


def test_zero_shot_every_task_and_the_group(tiny_model_dir, tmp_path):
    table, results = _run(tiny_model_dir, tmp_path, "--tasks", "icm", "--limit", "6")
    _assert_scores(table, results, (*TASKS, "icm"))
    assert all(results[t]["alias"] for t in TASKS)
    # balanced_acc has a (bootstrap) stderr per task and for the group, as acc has
    for task in (*TASKS, "icm"):
        stderr = results[task]["balanced_acc_stderr,none"]
        assert isinstance(stderr, float) and 0.0 <= stderr < 0.5, (task, stderr)
    assert results["icm"]["balanced_acc_stderr,none"] > 0


def test_golden_many_shot(tiny_model_dir, tmp_path):
    table, results = _run(tiny_model_dir, tmp_path, "--tasks", "icm_facts,icm_truthfulqa", "--limit", "6",
                          "--num_fewshot", "3", "--metadata", json.dumps({"labels": "gold"}))
    _assert_scores(table, results, ("icm_facts", "icm_truthfulqa"))


def test_many_shot_from_a_labels_file(tiny_model_dir, tmp_path):
    pool, _ = split_pool(load_task_examples("facts"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.jsonl").write_text(
        "".join(json.dumps({"id": e.id, "label": i % 2, "confidence": 0.5}) + "\n" for i, e in enumerate(pool[:20])))
    table, results = _run(tiny_model_dir, tmp_path, "--tasks", "icm_facts", "--limit", "6", "--num_fewshot", "4",
                          "--metadata", json.dumps({"labels": str(run / "labels.jsonl")}))
    _assert_scores(table, results, ("icm_facts",))


def test_group_run_with_a_partial_labels_dict_stops_naming_the_tasks_left_out(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pool, _ = split_pool(load_task_examples("facts"))
    (run / "labels.jsonl").write_text(
        "".join(json.dumps({"id": e.id, "label": e.label, "confidence": 0.5}) + "\n" for e in pool[:8]))
    proc = run_lm_eval(["--model", "hf", "--model_args", f"pretrained={tiny_model_dir}", "--include_path",
                        str(tasks_dir()), "--tasks", "icm", "--limit", "2", "--num_fewshot", "2",
                        "--metadata", json.dumps({"labels": {"icm_facts": str(run)}})],
                       env={"ICM_DATA_DIR": str(DATA)})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lm_eval: error: icm_truthfulqa:") and "icm_truthfulqa, icm_gsm8k, icm_alpaca" in last and "it names icm_facts" in last, last
