"""The search logic, with a scripted scorer: gold blindness, ConsistencyFix, clamps, determinism, resume."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from scripted import ScriptedScorer

from icm_plugin.core.examples import Example
from icm_plugin.core.metrics import accuracy
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.objective import evaluate
from icm_plugin.method.search import ICM, ICMConfig

TASK = get_task("facts")


def pool(n_groups: int = 12, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for g in range(n_groups):
        pair = [(f"right{g}", 1), (f"wrong{g}", 0)]
        rng.shuffle(pair)
        for slot, (ans, y) in enumerate(pair):
            out.append(Example(id=f"g{g}-{slot}", question=f"Question {g}?", choice=ans, consistency_id=f"g{g}",
                               consistency_key=ans, label=y))
    return out


def triples(n_groups: int = 6) -> list[Example]:
    """Groups of three claims, exactly one True each."""
    return [Example(id=f"t{g}-{k}", question=f"Triple {g}?", choice=f"claim {g}.{k}", consistency_id=f"t{g}",
                    label=int(k == g % 3)) for g in range(n_groups) for k in range(3)]


def truth(examples):
    return {TASK.prompt(e): e.label for e in examples}


def fit(examples, scorer=None, **cfg):
    scorer = scorer or ScriptedScorer(truth(examples), strength=1.0, herd=1.0)
    return ICM(scorer, TASK, ICMConfig(**cfg)).fit(examples, progress=False)


def test_finds_the_consistent_truth_with_a_knowing_scorer():
    exs = pool()
    icm = fit(exs, seed=1)
    assert accuracy(icm.labels_, [e.label for e in exs]) == 1.0
    assert icm.inconsistencies_ == 0
    assert len(icm.labels_) == len(exs) and all(0.5 < c <= 1 for c in icm.confidence_)


def test_gold_never_changes_the_result():
    exs = pool()
    scorer_truth = truth(exs)  # what the scripted "model" knows; independent of the gold field
    shuffled_gold = [e.label for e in exs]
    random.Random(7).shuffle(shuffled_gold)
    exs_shuffled = [replace(e, label=g) for e, g in zip(exs, shuffled_gold, strict=True)]
    exs_none = [e.without_gold() for e in exs]
    runs = [ICM(ScriptedScorer(scorer_truth, herd=1.0), TASK, ICMConfig(seed=3)).fit(p, progress=False)
            for p in (exs, exs_shuffled, exs_none)]
    assert runs[0].labels_ == runs[1].labels_ == runs[2].labels_
    assert runs[0].U_ == runs[1].U_ == runs[2].U_


def test_same_seed_same_labels_other_seed_other_path():
    exs = pool()
    a, b, c = fit(exs, seed=5, start="seed"), fit(exs, seed=5, start="seed"), fit(exs, seed=6, start="seed")
    assert a.labels_ == b.labels_ and a.history_ == b.history_
    assert a.history_ != c.history_


def _replay(probe, labels, records):
    """U before and after each repair the records describe, applied in order (violation, U before, U after)."""
    from icm_plugin.method.consistency import Violation

    index = {e.id: i for i, e in enumerate(probe._pool)}
    cur, out = list(labels), []
    for r in records:
        if r["resolution"] != "repaired":
            continue
        u_before = probe._evaluate(cur).U
        for ex_id, y in r["labels_after"].items():
            cur[index[ex_id]] = y
        out.append((Violation(r["rule"], tuple(index[j] for j in r["ids"])), u_before, probe._evaluate(cur).U))
    return cur, out


def test_consistency_fix_never_lowers_u():
    # a herding scorer: repairs often cost predictability. Every repair of a violation the step did not introduce
    # must not lower U; a violation the step introduced is repaired under force_repair even when U falls
    exs = pool(6) + triples(4)  # in a group of three an older violation can outlive the step's change
    scorer = ScriptedScorer(truth(exs), strength=0.3, herd=6.0)
    probe = ICM(scorer, TASK, ICMConfig.paper(seed=2, iterations=1))
    probe.fit(exs, progress=False)  # sets up rule, layout, memo
    rng = np.random.default_rng(0)
    seen, forced_losses = set(), 0
    for _ in range(60):
        labels = [int(x) if rng.random() < 0.8 else None for x in rng.integers(0, 2, len(exs))]
        i = int(rng.integers(len(exs)))
        new = list(labels)
        new[i] = 1 - labels[i] if labels[i] is not None else int(rng.integers(2))
        for force in (False, True):
            before = set(probe._rule.violations(labels, {i})) if force else None
            start = probe._evaluate(new)
            fixed, after, records = probe._consistency_fix(new, start, {i}, 0, before)
            seen |= {r["resolution"] for r in records}
            end, steps = _replay(probe, new, records)
            assert end == fixed and after.U == pytest.approx(evaluate(scorer, TASK, probe._rule, probe._pool, fixed,
                                                                        probe._group_orders, probe._objective).U)
            for v, u0, u1 in steps:
                if before is None or v in before:
                    assert u1 >= u0 - 1e-12, (v, u0, u1)
                else:
                    forced_losses += u1 < u0
            if not force:
                assert after.U >= start.U - 1e-12
    assert seen == {"repaired", "kept"} and forced_losses > 0  # both branches and the forced path were reached


def test_consistency_fix_repairs_when_it_pays():
    exs = pool(4)
    scorer = ScriptedScorer(truth(exs), strength=2.0)
    icm = ICM(scorer, TASK, ICMConfig(seed=0))
    icm._prepare([e.without_gold() for e in exs], None)  # the pool in its own order: indices below are file order
    labels = [1] * len(exs)  # every pair True/True
    before = icm._evaluate(labels)
    fixed, after, records = icm._consistency_fix(labels, before, touched=None, iteration=0)
    assert after.inconsistencies == 0 and after.U > before.U
    assert fixed == [e.label for e in exs]
    assert {r["resolution"] for r in records} == {"repaired"}


def test_clamped_labels_are_kept_even_against_the_model():
    exs = pool()
    wrong = {exs[0].id: 1 - exs[0].label, exs[5].id: 1 - exs[5].label}
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0), TASK, ICMConfig(seed=1)).fit(exs, clamped=wrong, progress=False)
    index = {e.id: i for i, e in enumerate(exs)}
    for ex_id, y in wrong.items():
        assert icm.labels_[index[ex_id]] == y
    assert icm.clamped_ == wrong


def test_clamped_unknown_id_is_a_clear_error():
    with pytest.raises(ICMError, match="not in the pool"):
        ICM(ScriptedScorer({}), TASK).fit(pool(2), clamped={"nope": 1}, progress=False)


def test_resume_from_checkpoint_gives_identical_result(tmp_path):
    exs = pool()
    full = fit(exs, seed=4, start="seed")
    ck = tmp_path / "checkpoint.json"
    cfg = ICMConfig(seed=4, start="seed")
    steps = []

    def stop_after_10(step):
        steps.append(step)
        if len(steps) == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ICM(ScriptedScorer(truth(exs), herd=1.0), TASK, cfg).fit(exs, checkpoint=ck, on_step=stop_after_10, progress=False)
    assert json.loads(ck.read_text())["iteration"] == 10
    resumed = ICM(ScriptedScorer(truth(exs), herd=1.0), TASK, cfg).fit(exs, checkpoint=ck, resume=True, progress=False)
    assert resumed.labels_ == full.labels_
    assert resumed.history_ == full.history_
    assert resumed.U_ == full.U_


def test_resume_refuses_a_checkpoint_of_another_pool(tmp_path):
    exs = pool()
    ck = tmp_path / "checkpoint.json"
    ICM(ScriptedScorer(truth(exs)), TASK, ICMConfig(seed=0, iterations=3)).fit(exs, checkpoint=ck, progress=False)
    other = pool(5)
    with pytest.raises(ICMError, match="different pool"):
        ICM(ScriptedScorer(truth(other)), TASK, ICMConfig(seed=0, iterations=3)).fit(other, checkpoint=ck, resume=True, progress=False)


def test_sampling_prefers_partly_labelled_groups():
    exs = pool(20)
    icm = ICM(ScriptedScorer(truth(exs)), TASK, ICMConfig(seed=0, iterations=1, always_add=False))
    icm.fit(exs, progress=False)
    labels = [None] * len(exs)
    labels[0] = 1  # group g0 is partly labelled; its other member should dominate the draws
    rng = np.random.default_rng(0)
    every = {j: {j: 0} for j in range(len(exs))}  # every example active
    draws = [icm._sample(rng, labels, every) for _ in range(2000)]
    share = draws.count(1) / len(draws)
    assert share == pytest.approx(100 / (100 + len(exs) - 1), abs=0.03)


def test_with_always_add_the_unlabelled_examples_come_first():
    exs = pool(20)
    icm = ICM(ScriptedScorer(truth(exs)), TASK, ICMConfig(seed=0, iterations=1))
    icm.fit(exs, progress=False)
    labels = [1] * 10 + [None] * (len(exs) - 10)
    rng = np.random.default_rng(0)
    every = {j: {j: 0} for j in range(len(exs))}
    draws = [icm._sample(rng, labels, every) for _ in range(2000)]
    share = sum(d >= 10 for d in draws) / len(draws)
    assert share == pytest.approx(100 * 10 / (100 * 10 + 10), abs=0.02)


def test_without_consistency_a_herding_model_collapses():
    # the objective's trap: with no rule, a strong herd effect wins over weak knowledge and every claim gets one
    # label; exactly-one keeps one True per question, so the labelling cannot collapse
    exs = pool(12)
    no_rule = ICM(ScriptedScorer(truth(exs), strength=0.2, herd=8.0), TASK, ICMConfig(seed=0, start="seed"), rule="none")
    no_rule.fit(exs, progress=False)
    with_rule = ICM(ScriptedScorer(truth(exs), strength=0.2, herd=8.0), TASK, ICMConfig(seed=0, start="seed")).fit(
        exs, progress=False)
    assert len(set(no_rule.labels_)) == 1
    assert with_rule._rule.inconsistency(no_rule.labels_) == 12  # every question broken by the collapse
    assert with_rule.inconsistencies_ == 0 and sum(with_rule.labels_) == 12  # one True per question


def test_force_repair_leaves_no_violation_the_steps_introduced():
    exs = pool(12)
    herd = dict(strength=0.5, herd=2.0, bias=-3.0)  # a model that says False to almost everything
    # ConsistencyFix belongs to the paper's per-example proposals
    soft = ICM(ScriptedScorer(truth(exs), **herd), TASK, ICMConfig.paper(seed=0, force_repair=False)).fit(exs, progress=False)
    hard = ICM(ScriptedScorer(truth(exs), **herd), TASK, ICMConfig.paper(seed=0, force_repair=True)).fit(exs, progress=False)
    assert soft.inconsistencies_ > 0  # repairs cost too much predictability: the never-lower fix keeps them
    assert hard.inconsistencies_ == 0
    assert all(r["resolution"] == "repaired" for r in hard.conflicts_ if r["iteration"] > 0)


def test_stops_at_a_fixed_point_of_its_proposals():
    exs = pool(10)
    icm = fit(exs, ScriptedScorer(truth(exs), strength=1.0, herd=1.0), seed=3)
    assert icm.converged_ and icm.n_iter_ < ICMConfig.iterations_per_example * len(exs)
    labels = [icm.labels_[p] for p in icm._order]  # the search's own order of the pool
    assert icm._proposals(labels, icm._evaluate(labels)) == {}  # no example's proposal differs from its label


def test_every_step_proposes_a_change_and_cools_on_accepted_flips():
    from icm_plugin.method.annealing import temperature

    exs = pool(10)
    icm = fit(exs, ScriptedScorer(truth(exs), strength=0.4, herd=3.0), seed=1, start="seed")
    accepted = flips = 0
    previous = dict(icm.history_[0]["changes"])
    for h in icm.history_[1:]:
        if h["example"] is None:  # the converged step
            continue
        assert h["T"] == pytest.approx(50.0 / len(exs) * temperature(flips, 1.0, 0.001))
        assert h["dU"] is not None
        assert not h["accepted"] or h["changes"], "an accepted step changed nothing"
        if not h["judged"]:  # a step that only labels new examples is always taken
            assert h["accepted"] and all(previous.get(j) is None for j in h["changes"])
        flips += int(h["accepted"] and h["judged"])
        accepted += int(h["accepted"])
        previous.update(h["changes"])
    assert accepted == icm.accepted_ and 0 < flips < accepted


def test_returns_the_best_fully_labelled_labelling_it_visited():
    exs = pool(10)
    icm = fit(exs, ScriptedScorer(truth(exs), strength=0.3, herd=4.0), seed=0, initial_temperature=50.0)
    labels: dict[int, int] = {}
    best = -float("inf")
    for h in icm.history_:
        for j, y in h["changes"].items():
            labels[int(j)] = y
        if h["accepted"] and len(labels) == len(exs):
            best = max(best, h["U"])
    assert icm.U_ == pytest.approx(best)


def test_paper_setting_shows_the_own_group_and_proposes_per_example():
    cfg = ICMConfig.paper()
    assert (cfg.context, cfg.proposal, cfg.scale) == ("loo", "example", "logodds")
    exs = pool(6)
    icm = ICM(ScriptedScorer(truth(exs), strength=1.0), TASK, cfg).fit(exs, progress=False)
    assert all(len(h["changes"]) <= 2 for h in icm.history_[1:])  # one label and at most its repair


@pytest.mark.parametrize("bad", [dict(alpha=-1.0), dict(alpha=float("nan")), dict(iterations=0),
                                 dict(context="all"), dict(scale="sum"), dict(proposal="pair"),
                                 dict(cooling=-1.0), dict(cooling=float("inf")), dict(group_weight=0.0),
                                 dict(group_weight=-2.0), dict(consistency_fix_steps=-1),
                                 dict(consistency_fix_steps=1.5), dict(normalise="labelled")])
def test_config_refuses_bad_values(bad):
    with pytest.raises(ICMError):
        ICMConfig(**bad)


def test_orders_lay_the_prompts_out_several_ways():
    exs = pool(8)
    one = ICM(ScriptedScorer(truth(exs), herd=1.0), TASK, ICMConfig(seed=2, orders=1)).fit(exs, progress=False)
    two = ICM(ScriptedScorer(truth(exs), herd=1.0), TASK, ICMConfig(seed=2, orders=2)).fit(exs, progress=False)
    assert len(one.group_orders_) == 1 and len(two.group_orders_) == 2
    assert two.group_orders_[0] == one.group_orders_[0] != two.group_orders_[1]
    assert sorted(two.group_orders_[1]) == sorted(one.group_orders_[0])


def test_with_always_add_the_labelling_phase_only_adds():
    # the seeds' random labels are wrong half the time; the group proposal must complete a seeded group
    # around its seed (an addition, always taken) instead of proposing a judged flip that can be refused
    exs = pool(12)
    icm = fit(exs, ScriptedScorer(truth(exs), strength=1.0, herd=1.0), seed=5, num_seed=8)
    labels: dict[str, int] = dict(icm.history_[0]["changes"])
    additions = 0
    for h in icm.history_[1:]:
        if any(k not in labels for k in h["changes"]):
            # a step that labels something is never judged and changes no label already given
            assert h["accepted"] and not h["judged"], h
            assert all(k not in labels for k in h["changes"]), h
            additions += 1
        labels |= h["changes"]
    assert len(labels) == len(exs) and additions <= len(exs) // 2  # at most one step per group


@pytest.mark.parametrize("num_seed", [1, 3])
def test_an_odd_seed_count_draws_which_label_gets_the_extra_seed(num_seed):
    exs = pool(6)
    trues = []
    for seed in range(16):
        icm = ICM(ScriptedScorer(truth(exs)), TASK, ICMConfig(seed=seed, num_seed=num_seed, iterations=1, start="seed"))
        seeds = icm.fit(exs, progress=False).history_[0]["changes"]
        assert len(seeds) == num_seed
        trues.append(sum(seeds.values()))
    assert set(trues) == {num_seed // 2, num_seed // 2 + 1}  # both labels get the extra seed on some seeds


def test_the_default_starts_from_the_models_own_labels_and_only_climbs():
    # start "bootstrap": zero-shot + rule (every group's best consistent labels with no demonstrations), then
    # rounds that relabel every group at once; the result is never below the best start round
    from scripted import OrderSensitiveScorer

    from icm_plugin.method.baselines import zero_shot_scores
    from icm_plugin.method.consistency import rule_decode

    exs = pool(10)
    scorer = OrderSensitiveScorer(truth(exs), strength=0.3, herd=1.0)
    icm = ICM(scorer, TASK, ICMConfig(seed=2)).fit(exs, progress=False)
    start = [h for h in icm.history_ if h["iteration"] == 0]
    assert start[0]["start"] == "zero-shot + rule" and len(start[0]["changes"]) == len(exs)
    zs = rule_decode(zero_shot_scores(scorer, TASK, exs), exs, "exactly_one")
    assert {int(i): y for i, y in start[0]["changes"].items()} == dict(enumerate(zs))
    assert [h["start"] for h in start[1:]] == [f"bootstrap round {r}" for r in range(1, len(start))]
    assert icm.U_ >= max(h["U"] for h in start) and icm.inconsistencies_ == 0


def test_the_bootstrap_start_keeps_clamped_labels():
    exs = pool(6)
    against = {exs[0].id: 1 - exs[0].label, exs[1].id: exs[0].label}  # one question, against the model
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0), TASK, ICMConfig(seed=0)).fit(exs, clamped=against,
                                                                                   progress=False)
    assert [icm.labels_[0], icm.labels_[1]] == [against[exs[0].id], against[exs[1].id]]
    assert icm.labels_[2:] == [e.label for e in exs[2:]]
