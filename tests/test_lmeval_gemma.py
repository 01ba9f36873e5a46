"""icm_facts with Gemma-3-270M through the stock lm-eval CLI in the three modes the paper compares: zero-shot,
golden many-shot, and many-shot from ICM's labels (a real `icm label --split pool` run)."""

from __future__ import annotations

import json

import pytest
from lmeval_helpers import results_json, results_table, run_lm_eval

from icm_plugin.cli.main import main as icm_main
from icm_plugin.integrations.lmeval import split_pool, tasks_dir
from icm_plugin.integrations.lmeval.sources import load_task_examples

SHOTS = 4


@pytest.fixture(scope="module")
def gemma() -> str:
    from icm_plugin.scoring.models import resolve_model

    return resolve_model("gemma-3-270m")


@pytest.fixture(scope="module")
def icm_run(gemma, tmp_path_factory):
    out = tmp_path_factory.mktemp("icm") / "facts-pool"
    assert icm_main(["label", "--task", "facts", "--split", "pool", "--model", gemma, "--limit", "8", "--seed", "0",
                     "--out", str(out)]) == 0
    return out


def _facts(gemma, tmp_path, *extra: str) -> dict[tuple[str, str], float]:
    out = tmp_path / "results"
    proc = run_lm_eval(["--model", "hf", "--model_args", f"pretrained={gemma}", "--include_path", str(tasks_dir()),
                        "--tasks", "icm_facts", "--limit", "16", "--batch_size", "8", "--output_path", str(out),
                        *extra])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table, results = results_table(proc.stdout), results_json(out)["icm_facts"]
    for metric in ("acc", "balanced_acc"):
        assert 0.0 <= table[("icm_facts", metric)] <= 1.0 and 0.0 <= results[f"{metric},none"] <= 1.0
    return table


@pytest.mark.slow
def test_zero_shot(gemma, tmp_path):
    _facts(gemma, tmp_path, "--num_fewshot", "0")


@pytest.mark.slow
def test_golden_many_shot(gemma, tmp_path):
    _facts(gemma, tmp_path, "--num_fewshot", str(SHOTS), "--metadata", json.dumps({"labels": "gold"}))


@pytest.mark.slow
def test_icm_many_shot(gemma, icm_run, tmp_path):
    pool, test = split_pool(load_task_examples("facts"))
    labelled = [json.loads(line)["id"] for line in (icm_run / "labels.jsonl").read_text().splitlines()]
    assert set(labelled) <= {e.id for e in pool} and not set(labelled) & {e.id for e in test}
    _facts(gemma, tmp_path, "--num_fewshot", str(SHOTS), "--metadata", json.dumps({"labels": str(icm_run)}))
