"""The search on groups of more than two, ragged groups, int group ids and key-less members (scripted scorer)."""

from __future__ import annotations

from scripted import ScriptedScorer
from test_search import TASK, truth

from icm_plugin.examples import Example
from icm_plugin.search import ICM, ICMConfig


def test_int_group_ids_and_examples_without_a_group_are_one_pool():
    # consistency_id as an int (Python API) beside examples that have none: one group per id, as the rules see it
    exs = [Example(id=f"g{g}-{k}", question=f"Question {g}?", choice=f"c{g}.{k}", consistency_id=g, label=int(k == 0))
           for g in range(4) for k in range(2)]
    exs += [Example(id=f"s{k}", question=f"Alone {k}?", choice=f"a{k}", label=k % 2) for k in range(3)]
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0), TASK, ICMConfig(seed=0)).fit(exs, progress=False)
    assert icm.labels_ == [e.label for e in exs] and icm.inconsistencies_ == 0
    groups = icm.group_orders_[0]
    assert sorted(groups) == sorted(["0", "1", "2", "3", "__single__s0", "__single__s1", "__single__s2"])
