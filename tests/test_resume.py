"""Resume: stopped at any step, default and paper settings, groups of three, the search continues exactly as the
uninterrupted run (labels, history, U, evaluations, token-forwards), and refuses another rule or budget."""

from __future__ import annotations

import json

import pytest
from scripted import OrderSensitiveScorer, ScriptedScorer
from test_search import TASK, truth

from icm_plugin.core.examples import Example
from icm_plugin.errors import ICMError
from icm_plugin.method.search import ICM, ICMConfig


def mixed_pool() -> list[Example]:
    """Groups of three and of two (exactly one True each)."""
    out = []
    for g in range(7):
        size = 3 if g % 2 else 2
        out += [Example(id=f"g{g}-{k}", question=f"Question {g}?", choice=f"c{g}.{k}", consistency_id=f"g{g}",
                        label=int(k == g % size)) for k in range(size)]
    return out


def scorer(exs, name: str = "seed-start"):
    if name == "default":  # the default starts from the model's own labels: a scorer whose prompts' order matters
        return OrderSensitiveScorer(truth(exs), strength=0.3, herd=1.0)  # keeps it searching after the start
    return ScriptedScorer(truth(exs), strength=0.6, herd=2.0)


CONFIGS = {"default": ICMConfig(seed=1), "seed-start": ICMConfig(seed=1, start="seed"),
           "paper": ICMConfig.paper(seed=1, iterations=30)}


def run_stopped_at(exs, cfg, ck, stop, name="seed-start"):
    steps = []

    def stop_after(step):
        steps.append(step)
        if len(steps) == stop:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ICM(scorer(exs, name), TASK, cfg).fit(exs, checkpoint=ck, on_step=stop_after, progress=False)
    assert json.loads(ck.read_text())["iteration"] == stop
    return ICM(scorer(exs, name), TASK, cfg).fit(exs, checkpoint=ck, resume=True, progress=False)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_resume_at_every_stop_point_continues_as_the_uninterrupted_run(tmp_path, name):
    exs, cfg = mixed_pool(), CONFIGS[name]
    full = ICM(scorer(exs, name), TASK, cfg).fit(exs, progress=False)
    assert full.n_iter_ >= 4
    for stop in sorted({1, 2, full.n_iter_ // 2, full.n_iter_ - 1}):
        resumed = run_stopped_at(exs, cfg, tmp_path / f"{name}-{stop}.json", stop, name)
        assert resumed.labels_ == full.labels_, stop
        assert resumed.history_ == full.history_, stop
        assert resumed.conflicts_ == full.conflicts_, stop
        assert resumed.U_ == full.U_ and resumed.confidence_ == full.confidence_, stop
        # the cache travels with the checkpoint: nothing the uninterrupted run took from it is scored again
        assert (resumed.evaluations_, resumed.token_forwards_) == (full.evaluations_, full.token_forwards_), stop


def test_resume_refuses_another_rule_or_step_budget(tmp_path, monkeypatch):
    exs = mixed_pool()
    ck = tmp_path / "checkpoint.json"
    with pytest.raises(KeyboardInterrupt):
        ICM(scorer(exs), TASK, ICMConfig(seed=0)).fit(
            exs, checkpoint=ck, progress=False, on_step=lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(ICMError, match="rule 'exactly_one', this search has 'none'"):
        ICM(scorer(exs), TASK, ICMConfig(seed=0), rule="none").fit(exs, checkpoint=ck, resume=True, progress=False)
    monkeypatch.setattr(ICMConfig, "iterations_per_example", 3)
    with pytest.raises(ICMError, match="iterations 17, this search has 51"):
        ICM(scorer(exs), TASK, ICMConfig(seed=0)).fit(exs, checkpoint=ck, resume=True, progress=False)
