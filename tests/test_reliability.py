"""The gold-free reliability verdict (``icm_plugin.method.reliability``): its signals, its flag and its per-record marks."""

from __future__ import annotations

import pytest
from scripted import ScriptedScorer

from icm_plugin.core.examples import Example, Groups
from icm_plugin.core.tasks import get_task
from icm_plugin.method.reliability import (
    THRESHOLDS,
    assess,
    judge,
    merge_reliability,
    report_reliability,
    rotated,
    rotated_within,
)
from icm_plugin.method.search import ICM, ICMConfig

TASK = get_task("facts")


def pairs(n: int = 8) -> list[Example]:
    return [Example(id=f"q{g}-{k}", question=f"Question {g}?", choice=f"answer {g}.{k}", consistency_id=f"q{g}",
                    label=int(k == g % 2)) for g in range(n) for k in range(2)]


def truth(exs):
    return {TASK.prompt(e): e.label for e in exs}


def test_rotation_keeps_each_group_consistent_and_changes_every_label_it_can():
    exs = pairs(2) + [Example(id=f"t{k}", question="Three?", choice=f"c{k}", consistency_id="t") for k in range(3)]
    exs += [Example(id="alone", question="Alone?", choice="x")]
    labels = [1, 0, 0, 1, 1, 0, 0, 1]
    out = rotated(labels, exs, 2)
    assert out[:4] == [0, 1, 1, 0]  # pairs swapped
    assert out[4:7] == [0, 0, 1]  # the triple rotated by one member: still exactly one True
    assert out[7] == 0  # alone: the next label
    assert rotated([2, 0, 3], [Example(id=str(i), question="q", choice="c") for i in range(3)], 4) == [3, 1, 0]
    # the benchmark's gold rotation: the same inside groups, a group of one or of one label left as it is
    assert rotated_within(labels, Groups(exs)) == out[:7] + [1]
    assert rotated_within([0, 0, 1, 0], Groups(pairs(2))) == [0, 0, 0, 1]


def test_a_model_that_knows_is_not_flagged():
    exs = pairs()
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0), TASK, ICMConfig(seed=0)).fit(exs, progress=False)
    verdict = assess(icm, exs, icm.labels_, [e.label for e in exs])
    assert not verdict["flag"] and verdict["reasons"] == [] and verdict["records"] == {}
    assert verdict["signals"]["agreement_zero_shot_rule"] == 1.0
    assert verdict["signals"]["margin"] == pytest.approx(4.0, abs=1e-6)  # 2 nats each way, every pair swapped
    assert verdict["signals"]["against_model"] == 0.0


def test_a_model_that_cannot_tell_the_labels_apart_is_flagged():
    exs = pairs()
    icm = ICM(ScriptedScorer(truth(exs), strength=0.01), TASK, ICMConfig(seed=0)).fit(exs, progress=False)
    verdict = assess(icm, exs, icm.labels_, [e.label for e in exs])
    assert verdict["flag"] and verdict["signals"]["margin"] < THRESHOLDS["margin"]
    assert any("rotated" in r for r in verdict["reasons"])


def test_far_from_asking_once_is_flagged_and_labels_against_the_model_are_marked():
    exs = pairs()
    against = {e.id: 1 - e.label for e in exs[:6]}  # three questions clamped against a model that knows
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0), TASK, ICMConfig(seed=0)).fit(exs, clamped=against,
                                                                                   progress=False)
    verdict = assess(icm, exs, icm.labels_, [e.label for e in exs])
    assert set(verdict["records"]) == set(against)  # exactly the labels the model would not give
    assert all(r["best"] == 1 - against[i] and r["p_best"] > r["p_label"] for i, r in verdict["records"].items())
    assert verdict["signals"]["against_model"] == pytest.approx(6 / 16)
    assert verdict["flag"] and any("less likely" in r for r in verdict["reasons"])
    far = assess(icm, exs, icm.labels_, [1 - y for y in icm.labels_])  # asking once said the opposite everywhere
    assert far["signals"]["agreement_zero_shot_rule"] == 0.0 and any("zero-shot" in r for r in far["reasons"])


def test_a_signal_without_a_threshold_never_flags():
    worst = {"agreement_zero_shot_rule": 0.0, "margin": 0.0, "against_model": 1.0, "majority_share": 1.0}
    assert len(judge(worst)) == 4
    only_margin = judge(worst, {"margin": 0.5})
    assert len(only_margin) == 1 and "rotated" in only_margin[0]
    assert judge(worst | {"margin": None}, {"margin": 0.5}) == []  # not measured


def test_batches_merge_to_one_verdict():
    good = {"flag": False, "reasons": [], "signals": {"agreement_zero_shot_rule": 1.0, "margin": 2.0,
                                                      "against_model": 0.0, "majority_share": 0.5},
            "thresholds": THRESHOLDS, "records": {}}
    bad = {"flag": True, "reasons": ["x"], "signals": {"agreement_zero_shot_rule": 0.5, "margin": 0.0,
                                                       "against_model": 0.5, "majority_share": 0.9},
           "thresholds": THRESHOLDS, "records": {"a": {}, "b": {}}}
    merged = merge_reliability([(30, report_reliability(good)), (10, report_reliability(bad))])
    assert merged["flag"] and merged["reasons"] == ["batch 2: x"] and merged["records_against_model"] == 2
    assert merged["signals"] == {"agreement_zero_shot_rule": 0.875, "margin": 1.5, "against_model": 0.125,
                                 "majority_share": 0.6}


def test_a_labelling_collapsed_to_one_class_is_flagged():
    # the objective's trap: with no rule, a strong herd effect wins over weak knowledge and every claim gets one
    # label; the rotation cannot expose it (every group is one label), the label shares do
    exs = pairs(12)
    icm = ICM(ScriptedScorer(truth(exs), strength=0.2, herd=8.0), TASK, ICMConfig(seed=0, start="seed"),
              rule="none").fit(exs, progress=False)
    assert len(set(icm.labels_)) == 1
    verdict = assess(icm, exs, icm.labels_, [e.label for e in exs])
    assert verdict["signals"]["majority_share"] == 1.0 and verdict["flag"]
    assert any("collapsed to one class" in r for r in verdict["reasons"])
