"""One view of the pool's groups (``core.examples.Groups``): every part that asks which examples go together
gets the same answer, whatever type a consistency_id has, and the search builds the view once."""

from __future__ import annotations

import pytest
from scripted import ScriptedScorer
from test_search import TASK, truth

from icm_plugin.apps.batches import split_by_group
from icm_plugin.apps.preflight import rule_coverage
from icm_plugin.apps.train import heldout_groups
from icm_plugin.core import examples as examples_module
from icm_plugin.core.examples import Example, Groups, canonical_order, group_key
from icm_plugin.core.loaders import limit_pool
from icm_plugin.core.metrics import slot_table
from icm_plugin.method.consistency import make_rule
from icm_plugin.method.reliability import rotated
from icm_plugin.method.search import ICM, ICMConfig


def mixed_pool() -> list[Example]:
    """Python-API ids of mixed types: the int 7 and the string "7" are one group; two examples have no group."""
    raw = [("a", 7, 1), ("b", "7", 0), ("c", "q", 1), ("d", "q", 0), ("e", "q", 0), ("f", None, 1), ("g", None, 0),
           ("h", "r", 1)]
    return [Example(id=i, question=f"Q {g}?", choice=f"claim {i}", consistency_id=g, consistency_key=i, label=y)
            for i, g, y in raw]


def test_the_view():
    pool = mixed_pool()
    view = Groups(pool)
    assert view.members == {"7": [0, 1], "q": [2, 3, 4], "__single__f": [5], "__single__g": [6], "r": [7]}
    assert view.ruled == {"7": [0, 1], "q": [2, 3, 4], "r": [7]}  # an example without an id is left free
    assert view.key == tuple(group_key(e) for e in pool)
    assert view.of(1) == [0, 1] and view.of(5) == [5]
    assert view.checkable() == 2 and len(view) == 5
    order = canonical_order(pool, seed=3)
    ordered = Groups(pool, order)
    assert {g: sorted(ms) for g, ms in ordered.members.items()} == view.members
    assert [i for ms in ordered.members.values() for i in ms] == order  # members in the given order


def test_every_part_reads_the_same_groups():
    pool = mixed_pool()
    view = Groups(pool)
    for name in ("exactly_one", "same_key", "key", "none"):
        assert make_rule(name, pool).groups == view.ruled
    # the preflight's "groups the rule can check" counts the int 7 and the string "7" as one group, as the rule
    assert rule_coverage(pool, "exactly_one", "pool")["consistency_groups"] == view.checkable() == 2
    labels = [1, 1, 1, 0, 0, 1, 0, 1]
    assert make_rule("exactly_one", pool).inconsistency(labels) == 1  # a and b: one group, both True
    # the report's slot table: the position inside the view's groups
    assert slot_table(pool, labels) == {"slot_0": 0.8, "slot_1": 0.5, "slot_2": 0.0}
    # the rotation shifts the view's groups, so a and b swap
    assert rotated(labels, pool, 2)[:2] == [0, 0] and rotated([1, 0, 1, 0, 0, 1, 0, 1], pool, 2)[:2] == [0, 1]
    # splits never cut a group of the view
    for size in (1, 2, 3, 4):
        for batch in split_by_group(pool, size):
            ids = {e.id for e in batch}
            for ms in view.members.values():
                assert {pool[i].id for i in ms} <= ids or not {pool[i].id for i in ms} & ids
    kept = {e.id for e in limit_pool(pool, 3)}
    assert all({pool[i].id for i in ms} <= kept or not {pool[i].id for i in ms} & kept for ms in view.members.values())
    assert heldout_groups(pool, 0.5, seed=0) <= set(view.members)


def test_the_search_builds_the_view_once(monkeypatch):
    from test_search import pool as facts_pool

    built = []
    original = examples_module.Groups.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(examples_module.Groups, "__init__", counting)
    exs = facts_pool(6)
    for start in ("bootstrap", "seed"):
        built.clear()
        icm = ICM(ScriptedScorer(truth(exs), strength=1.0, herd=1.0), TASK, ICMConfig(start=start, seed=1))
        icm.fit(exs, progress=False)
        assert icm.evaluations_ >= 2  # the view served several evaluations
        assert len(built) == 1, f"start={start}: the groups were built {len(built)} times"


@pytest.mark.parametrize("cid", [3, "3"])
def test_an_int_id_is_the_same_group_in_the_search(cid):
    """The search's layout, rule and proposals all see one group whether the id is the int or the string."""
    exs = [Example(id="x", question="Q?", choice="yes", consistency_id=cid, consistency_key="yes"),
           Example(id="y", question="Q?", choice="no", consistency_id="3", consistency_key="no"),
           Example(id="z", question="R?", choice="maybe", consistency_id="4", consistency_key="maybe"),
           Example(id="w", question="R?", choice="never", consistency_id=4, consistency_key="never")]
    known = {TASK.prompt(e): y for e, y in zip(exs, [1, 0, 0, 1], strict=True)}
    icm = ICM(ScriptedScorer(known, strength=1.0, herd=1.0), TASK, ICMConfig(seed=0)).fit(exs, progress=False)
    assert sorted(map(sorted, icm.group_orders_)) == [["3", "4"]]
    assert icm.inconsistencies_ == 0
