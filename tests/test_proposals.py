"""The group proposal (``best_assignment``): the most likely rule-consistent assignment of one group, by
enumeration for small groups and by the rule's exact decoder for large ones (checked against brute force)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from icm_plugin.core.examples import Example
from icm_plugin.method import proposals
from icm_plugin.method.consistency import make_rule
from icm_plugin.method.objective import Objective
from icm_plugin.method.proposals import best_assignment

TERM = Objective().term


def group(size: int, keys: list | None = None) -> list[Example]:
    return [Example(id=str(j), question="q", choice=f"c{j}", consistency_id="g",
                    consistency_key=None if keys is None else keys[j]) for j in range(size)]


def brute_force(rule, members, logprobs, clamped, k):
    """The best score over every consistent assignment (None when there is none)."""
    best = None
    for values in itertools.product(range(k), repeat=len(members)):
        if any(clamped.get(j, y) != y for j, y in zip(members, values, strict=True)):
            continue
        if rule.group_violations(members, list(values)) if len(members) > 1 else []:
            continue
        score = sum(TERM(logprobs[j], y) for j, y in zip(members, values, strict=True))
        best = score if best is None else max(best, score)
    return best


def score(assignment, logprobs):
    return sum(TERM(logprobs[j], y) for j, y in assignment.items())


@pytest.mark.parametrize("enumerate_up_to", [proposals.MAX_ENUMERATED_GROUP, 0])  # enumeration, then the decoder
@pytest.mark.parametrize("name,k", [("exactly_one", 2), ("key", 2), ("same_key", 2), ("same_key", 3), ("none", 3)])
def test_best_assignment_is_the_consistent_optimum(monkeypatch, enumerate_up_to, name, k):
    monkeypatch.setattr(proposals, "MAX_ENUMERATED_GROUP", enumerate_up_to)
    monkeypatch.setattr(proposals, "MAX_ASSIGNMENTS", k ** enumerate_up_to)
    rng = random.Random(f"{name}{k}{enumerate_up_to}")
    for _ in range(60):
        size = rng.randint(1, 6)
        keys = [rng.choice(["a", "b", "c", None]) for _ in range(size)]
        exs = group(size, keys)
        rule = make_rule(name, exs, k)
        members = list(range(size))
        logprobs = {j: np.log(np.random.default_rng(rng.randrange(10**6)).dirichlet(np.ones(k))) for j in members}
        clamped = {j: rng.randrange(k) for j in members if rng.random() < 0.25}
        got = best_assignment(rule, members, [None] * size, logprobs, clamped, TERM)
        want = brute_force(rule, members, logprobs, clamped, k)
        assert all(got[j] == y for j, y in clamped.items())
        if want is None:  # the clamps allow nothing consistent: clamps kept, the rest by their own argmax
            assert all(got[j] == int(np.argmax(logprobs[j])) for j in members if j not in clamped)
            continue
        assert not (rule.group_violations(members, [got[j] for j in members]) if size > 1 else [])
        assert score(got, logprobs) == pytest.approx(want)


def test_a_large_key_group_is_decoded_consistently_without_enumerating():
    # 14 members, 7 answers, every member prefers True: at most one answer may be True, and its members agree
    exs = group(14, [str(j // 2) for j in range(14)])
    rule = make_rule("key", exs)
    calls = []
    check = rule.group_violations
    rule.group_violations = lambda members, labels: calls.append(1) or check(members, labels)
    margins = np.linspace(0.5, 2.0, 14)
    logprobs = {j: np.array([-np.logaddexp(0, m), -np.logaddexp(0, -m)]) for j, m in enumerate(margins)}
    got = best_assignment(rule, list(range(14)), [None] * 14, logprobs, {}, TERM)
    assert check(list(range(14)), [got[j] for j in range(14)]) == []
    assert [got[j] for j in range(14)] == [0] * 12 + [1, 1]  # the answer with the largest summed margin
    assert len(calls) == 0  # decoded, not enumerated


def test_twelve_members_are_not_enumerated():
    exs = group(12)
    rule = make_rule("exactly_one", exs)
    calls = []
    check = rule.group_violations
    rule.group_violations = lambda members, labels: calls.append(1) or check(members, labels)
    logprobs = {j: np.log(np.array([0.6, 0.4])) for j in range(12)}
    got = best_assignment(rule, list(range(12)), [None] * 12, logprobs, {}, TERM)
    assert sum(got.values()) == 1 and len(calls) == 0
