"""No order in the input reaches the labels: the same records in another order, same seed, give the same labels.

The shared TruthfulQA and GSM8K files list the true candidate first in every group. The search, the bootstrap
baseline and the rule decoders work on the pool in an order drawn from the seed and the ids
(``icm_plugin.core.examples.canonical_order``), so a model that reads "the first claim of a block is true", or a
tie broken by position, cannot turn file order into labels.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from scripted import OrderSensitiveScorer

from icm_plugin.core.examples import Example, canonical_order
from icm_plugin.core.tasks import get_task
from icm_plugin.method.baselines import group_argmax_labels
from icm_plugin.method.bootstrap import Bootstrap
from icm_plugin.method.consistency import rule_decode
from icm_plugin.method.search import ICM, ICMConfig

TASK = get_task("facts")


def true_first_pool(n_groups: int = 8) -> list[Example]:
    """Groups of two or three candidates, the true one first in each (as ../shared/data lists them)."""
    out = []
    for g in range(n_groups):
        size = 3 if g % 2 else 2
        out += [Example(id=f"q{g}-{k}", question=f"Question {g}?", choice=f"answer {g}.{k}", consistency_id=f"q{g}",
                        label=int(k == 0)) for k in range(size)]
    return out


def permutations(exs: list[Example]) -> list[list[Example]]:
    shuffled = list(exs)
    random.Random(11).shuffle(shuffled)
    by_group_reversed = [e for g in sorted({e.consistency_id for e in exs}, reverse=True)
                         for e in reversed([x for x in exs if x.consistency_id == g])]
    return [list(reversed(exs)), shuffled, by_group_reversed]


def labels_by_id(exs: list[Example], labels: list[int]) -> dict[str, int]:
    return {e.id: y for e, y in zip(exs, labels, strict=True)}


def scorer_for(exs, strength: float = 0.6):
    return OrderSensitiveScorer({TASK.prompt(e): e.label for e in exs}, strength=strength, herd=1.0)


@pytest.mark.parametrize("config", [ICMConfig(seed=0), ICMConfig(seed=3), ICMConfig.paper(seed=1),
                                    ICMConfig(seed=2, proposal="example", iterations=30)],
                         ids=["default-seed0", "default-seed3", "paper", "example-proposals"])
def test_permuted_records_give_the_same_labels(config):
    exs = true_first_pool()
    first = ICM(scorer_for(exs), TASK, config).fit(exs, progress=False)
    want = labels_by_id(exs, first.labels_)
    for other in permutations(exs):
        icm = ICM(scorer_for(exs), TASK, config).fit(other, progress=False)
        assert labels_by_id(other, icm.labels_) == want
        assert icm.U_ == pytest.approx(first.U_, abs=1e-9)
        assert dict(zip([e.id for e in other], icm.confidence_, strict=True)) == pytest.approx(
            dict(zip([e.id for e in exs], first.confidence_, strict=True)))
        # the history names examples in the order the caller gave them
        moved = {str(i): y for h in icm.history_ for i, y in h.get("changes", {}).items()}
        assert {other[int(i)].id: y for i, y in moved.items()}.keys() == {e.id for e in exs}


def test_the_search_order_is_drawn_from_seed_and_ids_not_position():
    exs = true_first_pool()
    ids = [exs[i].id for i in canonical_order(exs, 0)]
    for other in permutations(exs):
        assert [other[i].id for i in canonical_order(other, 0)] == ids
    assert [exs[i].id for i in canonical_order(exs, 1)] != ids  # another seed, another order
    # the members of a group stay together, and the true-first file order does not survive
    groups = [exs[i].consistency_id for i in canonical_order(exs, 0)]
    assert all(groups.index(g) + groups.count(g) - 1 == len(groups) - 1 - groups[::-1].index(g) for g in set(groups))
    firsts = [next(exs[i] for i in canonical_order(exs, 0) if exs[i].consistency_id == g) for g in set(groups)]
    assert 0 < sum(e.label for e in firsts) < len(firsts)


def test_bootstrap_gives_the_same_labels_in_any_order():
    exs = true_first_pool(16)
    want = labels_by_id(exs, Bootstrap(scorer_for(exs, 0.1), TASK, rounds=3, seed=0).fit(exs).labels_)
    for other in permutations(exs):
        boot = Bootstrap(scorer_for(exs, 0.1), TASK, rounds=3, seed=0).fit(other)
        assert labels_by_id(other, boot.labels_) == want


def test_rule_decoders_break_ties_by_id_not_position():
    # a constant margin ties every candidate of a group: the pick must not be "the first one in the file"
    exs = true_first_pool()
    scores = np.tile(np.log([0.4, 0.6]), (len(exs), 1))
    for decode in (lambda s, p: rule_decode(s, p, "exactly_one"), group_argmax_labels):
        want = labels_by_id(exs, decode(scores, exs))
        for other in permutations(exs):
            assert labels_by_id(other, decode(scores, other)) == want
        assert 0 < sum(want[e.id] for e in exs if e.label == 1) < 8  # not always the true-first candidate
