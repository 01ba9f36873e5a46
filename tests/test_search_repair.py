"""ConsistencyFix in the paper's per-example proposals: no no-op steps, and only the step's own violations are
repaired whatever they cost (scripted scorer)."""

from __future__ import annotations

import numpy as np
from scripted import ScriptedScorer
from test_search import TASK, pool, truth

from icm_plugin.core.examples import Example
from icm_plugin.method.checkpoint import SearchState
from icm_plugin.method.proposals import ExampleProposal
from icm_plugin.method.search import ICM, ICMConfig


def test_without_force_repair_no_step_is_a_no_op():
    # a model that says False to almost everything: every pair wants False/False, whose repair costs too much
    # predictability, so the never-lower fix keeps the violation; an example already at its best label in such a
    # group has nothing to do and must not be drawn (it was: accepted with dU = 0, cooling T, again and again)
    exs = pool(12)
    icm = ICM(ScriptedScorer(truth(exs), strength=0.5, herd=2.0, bias=-3.0), TASK,
              ICMConfig.paper(seed=0, force_repair=False)).fit(exs, progress=False)
    steps = [h for h in icm.history_[1:] if h["example"] is not None]
    assert all(h["changes"] for h in steps if h["accepted"]), "an accepted step changed nothing"
    assert icm.converged_ and icm.n_iter_ < len(exs)


def group_of_three_and_pairs() -> list[Example]:
    exs = [Example(id=f"a{k}", question="Question A?", choice=f"a{k}", consistency_id="A", label=int(k == 0))
           for k in range(3)]
    return exs + [Example(id=f"g{g}-{k}", question=f"Question {g}?", choice=f"c{g}.{k}", consistency_id=f"g{g}",
                          label=int(k == 0)) for g in range(5) for k in range(2)]


def test_force_repair_forces_only_the_violations_the_step_introduced():
    # group A (three claims) holds an older True/True violation (a0, a1); the step labels a2 False, which breaks
    # nothing. Repairing (a0, a1) costs U here (a herding model), so it must be judged, not forced.
    exs = group_of_three_and_pairs()
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0, herd=3.0), TASK, ICMConfig.paper(seed=0, iterations=1))
    icm._prepare([e.without_gold() for e in exs], None)  # the pool in its own order: indices below are file order
    labels = [1, 1, None] + [1, 1] * 5
    cur = icm._evaluate(labels)
    assert int(np.argmax(cur.logprobs[2])) == 0  # a2's proposal: False
    repaired = [icm._evaluate(alt + labels[3:]).U for alt in ([1, 0, 0], [0, 1, 0])]
    assert max(repaired) < icm._evaluate([1, 1, 0] + labels[3:]).U  # the repair would lower U
    icm._sample = lambda rng, labels, proposals: 2
    state = SearchState(labels, cur, iteration=1)
    icm._step(2, np.random.default_rng(0), state)
    assert [(c["ids"], c["resolution"]) for c in state.conflicts] == [(["a0", "a1"], "kept")]


def test_force_repair_still_repairs_what_the_step_broke_whatever_u_says():
    exs = group_of_three_and_pairs()
    icm = ICM(ScriptedScorer(truth(exs), strength=2.0, herd=3.0), TASK, ICMConfig.paper(seed=0, iterations=1))
    icm._prepare([e.without_gold() for e in exs], None)  # the pool in its own order: indices below are file order
    labels = [1, 0, 0] + [1, 0] * 5
    new = [1, 1, 0] + labels[3:]  # the step's proposal breaks exactly-one in group A
    fixed, after, records = ExampleProposal.repair(icm, 1, labels, new, 1)[:3]
    assert after.inconsistencies == 0 and [r["resolution"] for r in records] == ["repaired"]
    assert fixed[:3] in ([1, 0, 0], [0, 1, 0])
