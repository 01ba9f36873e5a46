"""The search on groups of more than two, ragged groups, int group ids and key-less members (scripted scorer)."""

from __future__ import annotations

import random

import pytest
from scripted import ScriptedScorer
from test_search import TASK, truth

from icm_plugin.core.examples import Example
from icm_plugin.method.search import ICM, ICMConfig


def test_int_group_ids_and_examples_without_a_group_are_one_pool():
    # consistency_id as an int (Python API) beside examples that have none: one group per id, as the rules see it
    exs = [Example(id=f"g{g}-{k}", question=f"Question {g}?", choice=f"c{g}.{k}", consistency_id=g, label=int(k == 0))
           for g in range(4) for k in range(2)]
    exs += [Example(id=f"s{k}", question=f"Alone {k}?", choice=f"a{k}", label=k % 2) for k in range(3)]
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0), TASK, ICMConfig(seed=0)).fit(exs, progress=False)
    assert icm.labels_ == [e.label for e in exs] and icm.inconsistencies_ == 0
    groups = icm.group_orders_[0]
    assert sorted(groups) == sorted(["0", "1", "2", "3", "__single__s0", "__single__s1", "__single__s2"])


def ragged(n_groups: int = 8) -> list[Example]:
    """Groups of 2 to 5 claims, exactly one True each, in a shuffled file order."""
    out = []
    for g in range(n_groups):
        size = 2 + g % 4
        out += [Example(id=f"g{g}-{k}", question=f"Question {g}?", choice=f"claim {g}.{k}", consistency_id=f"g{g}",
                        label=int(k == (3 * g) % size)) for k in range(size)]
    random.Random(0).shuffle(out)
    return out


@pytest.mark.parametrize("cfg", [ICMConfig(seed=1), ICMConfig.paper(seed=1)], ids=["default", "paper"])
def test_groups_of_two_to_five_find_the_consistent_truth(cfg):
    exs = ragged()
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0, herd=0.5), TASK, cfg).fit(exs, progress=False)
    assert icm.labels_ == [e.label for e in exs] and icm.inconsistencies_ == 0


def test_key_groups_with_shared_answers_label_each_answer_once():
    # GSM8K-like: four solutions per problem, two reach the right answer; the key rule ties them together
    exs = [Example(id=f"p{g}-{k}", question=f"Problem {g}?", choice=f"solution {g}.{k}", consistency_id=f"p{g}",
                   consistency_key=["right", "right", "wrong a", "wrong b"][k], label=int(k < 2))
           for g in range(6) for k in range(4)]
    icm = ICM(ScriptedScorer(truth(exs), strength=1.0, herd=0.5), TASK, ICMConfig(seed=2), rule="key")
    icm.fit(exs, progress=False)
    assert icm.rule_name_ == "key" and icm.inconsistencies_ == 0
    assert icm.labels_ == [e.label for e in exs]
