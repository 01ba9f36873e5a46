"""One real run with Gemma-3-270M (the default model) on a small facts pool."""

from __future__ import annotations

import json

import pytest

from icm_plugin.cli.main import main


@pytest.mark.slow
def test_real_gemma_run_on_a_small_facts_pool(tmp_path, capsys):
    out = tmp_path / "gemma"
    assert main(["label", "--task", "facts", "--limit", "8", "--iterations", "12", "--seed", "0", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "labels.jsonl") in printed and str(out / "report.json") in printed
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "gemma-3-270m" and report["n"] == 8
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["balanced_accuracy"] <= 1
    # P is the mean signed log-odds of the labels (pool-normalised): any sign; U = alpha * P - I
    assert report["U"] == pytest.approx(50 * report["mutual_predictability"] - report["inconsistencies"])
    assert report["token_forwards"] > 0 and set(report["reference"]) == {"zero_shot", "zero_shot_rule"}
    labels = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 8 and all(0 < r["confidence"] < 1 for r in labels)
