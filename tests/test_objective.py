"""The objective's prompts and scale: leave-one-group-out layout, the paper's setting, signed log-odds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scripted import ScriptedScorer
from test_search import TASK, pool, truth

from icm_plugin.core.examples import Groups
from icm_plugin.method.consistency import make_rule
from icm_plugin.method.objective import Objective, evaluate, group_requests


def _question(text: str) -> str:
    return text.split("\n", 1)[0]


def test_group_context_never_shows_the_own_group():
    exs = pool(8)
    labels = [e.label for e in exs]
    order = sorted(Groups(exs).members)
    index, reqs = group_requests(TASK, exs, labels, order, context="group")
    assert sorted(index) == list(range(len(exs)))
    for r in reqs:
        assert _question(r.query) not in {_question(d) for d in r.demos}
        assert len(r.demos) == len(exs) - 2  # every other group's two members


def test_loo_context_is_every_other_example_in_one_order_as_the_authors_lay_it_out():
    # the authors' code: every other labelled example, in one order for the whole pool; the own group's other
    # member sits at its group's place in that order, not right before the query
    exs = pool(8)
    labels = [e.label for e in exs]
    order = sorted(Groups(exs).members)
    members = Groups(exs).members
    everything = [TASK.demonstration(exs[j], labels[j]) for g in order for j in members[g]]
    index, reqs = group_requests(TASK, exs, labels, order, context="loo")
    assert index == [j for g in order for j in members[g]]
    for i, r in zip(index, reqs, strict=True):
        assert list(r.demos) == [d for d in everything if d != TASK.demonstration(exs[i], labels[i])]
    first = reqs[0]  # a member of the first group: its partner opens the prompt, far from the query
    assert _question(first.demos[0]) == _question(first.query) != _question(first.demos[-1])


def test_members_of_a_group_share_one_context_and_unlabelled_groups_add_none():
    exs = pool(8)
    labels = [e.label if i < 8 else None for i, e in enumerate(exs)]  # groups 0-3 labelled
    index, reqs = group_requests(TASK, exs, labels, sorted(Groups(exs).members))
    by_group: dict[str, set] = {}
    for i, r in zip(index, reqs, strict=True):
        by_group.setdefault(exs[i].consistency_id, set()).add(r.demos)
        assert all(d.endswith((" True", " False")) for d in r.demos)
        assert len(r.demos) == (8 if i >= 8 else 6)  # unlabelled queries see all four labelled groups
    assert all(len(v) == 1 for v in by_group.values())


def test_layout_positions_do_not_depend_on_which_groups_are_labelled():
    # every query's demonstrations with only some groups labelled are the full layout's, those groups' kept in
    # the same order: a group's block sits at the same place whatever else is labelled
    exs = pool(8)
    full = [e.label for e in exs]
    order = [f"g{k}" for k in (3, 0, 6, 1, 7, 2, 5, 4)]
    by_query = dict(zip(*group_requests(TASK, exs, full, order), strict=True))
    for labelled_groups in ({"g0", "g5"}, {"g1", "g2", "g3", "g7"}, {"g4"}):
        part = [y if exs[i].consistency_id in labelled_groups else None for i, y in enumerate(full)]
        kept = {TASK.demonstration(e, y) for e, y in zip(exs, part, strict=True) if y is not None}
        index, reqs = group_requests(TASK, exs, part, order)
        assert sorted(index) == list(range(len(exs)))
        for i, r in zip(index, reqs, strict=True):
            assert list(r.demos) == [d for d in by_query[i].demos if d in kept]
            assert len(r.demos) == 2 * len(labelled_groups - {exs[i].consistency_id})


def test_signed_log_odds_and_log_probability_scales():
    lp = np.log(np.array([0.2, 0.8]))
    assert Objective(scale="logodds").term(lp, 1) == pytest.approx(math.log(4))
    assert Objective(scale="logodds").term(lp, 0) == pytest.approx(-math.log(4))
    assert Objective(scale="logprob").term(lp, 1) == pytest.approx(math.log(0.8))
    assert Objective(scale="logprob").term(lp, 0) == pytest.approx(math.log(0.2))
    with pytest.raises(ValueError):
        Objective(scale="sum")


def test_u_is_alpha_times_mean_term_minus_violations():
    exs = pool(6)
    scorer = ScriptedScorer(truth(exs), strength=1.0)
    rule = make_rule("exactly_one", exs)
    labels = [e.label for e in exs]
    labels[0] = labels[1] = 1  # one True/True pair
    for scale in ("logodds", "logprob"):
        obj = Objective(alpha=50.0, scale=scale)
        ev = evaluate(scorer, TASK, rule, exs, labels, [sorted(Groups(exs).members)], obj)
        terms = [obj.term(ev.logprobs[i], labels[i]) for i in range(len(exs))]
        assert ev.inconsistencies == 1
        assert ev.U == pytest.approx(50.0 * (np.mean(terms) - obj.chance()) - 1)
        assert set(ev.logprobs) == set(range(len(exs)))
        authors = evaluate(scorer, TASK, rule, exs, labels, [sorted(Groups(exs).members)],
                           Objective(alpha=50.0, scale=scale, normalise="labelled"))
        assert authors.U == pytest.approx(50.0 * np.mean(terms) - 1)


def test_pool_normalisation_counts_unlabelled_examples_as_chance():
    exs = pool(6)
    scorer = ScriptedScorer(truth(exs), strength=1.0)
    rule = make_rule("exactly_one", exs)
    half = [e.label if i < 6 else None for i, e in enumerate(exs)]
    for scale in ("logodds", "logprob"):
        obj = Objective(scale=scale)
        ev = evaluate(scorer, TASK, rule, exs, half, [sorted(Groups(exs).members)], obj)
        gains = [obj.term(ev.logprobs[i], half[i]) - obj.chance() for i in range(6)]
        assert ev.mutual_predictability == pytest.approx(sum(gains) / len(exs))


def test_group_scores_do_not_depend_on_the_groups_own_labels():
    exs = pool(6)
    scorer = ScriptedScorer(truth(exs), strength=1.0, herd=2.0)
    rule = make_rule("exactly_one", exs)
    order = sorted(Groups(exs).members)
    a = [e.label for e in exs]
    b = list(a)
    b[0] = b[1] = 0  # relabel group g0 (the herd scorer reads the share of True demonstrations)
    ea, eb = (evaluate(scorer, TASK, rule, exs, x, [order], Objective()) for x in (a, b))
    np.testing.assert_array_equal(ea.logprobs[0], eb.logprobs[0])
    np.testing.assert_array_equal(ea.logprobs[1], eb.logprobs[1])
    assert not np.array_equal(ea.logprobs[2], eb.logprobs[2])  # the other groups see g0's labels


def test_several_orders_average_the_layouts_log_probabilities():
    exs = pool(6)
    scorer = ScriptedScorer(truth(exs), strength=1.0, herd=2.0)
    rule = make_rule("exactly_one", exs)
    labels = [e.label if i != 3 else None for i, e in enumerate(exs)]
    a, b = sorted(Groups(exs).members), sorted(Groups(exs).members, reverse=True)
    ea, eb, both = (evaluate(scorer, TASK, rule, exs, labels, orders, Objective()) for orders in ([a], [b], [a, b]))
    for i in range(len(exs)):
        mean = (ea.logprobs[i] + eb.logprobs[i]) / 2
        np.testing.assert_allclose(both.logprobs[i], mean - np.logaddexp.reduce(mean))
