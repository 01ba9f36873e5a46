"""The zero-shot baselines' decoding (no model: scores given)."""

import numpy as np

from icm_plugin.core.examples import Example
from icm_plugin.method.baselines import group_argmax_labels


def scores_of(margins):
    m = np.asarray(margins, dtype=float)
    return np.stack([-np.logaddexp(0, m), -np.logaddexp(0, -m)], axis=1)


def test_group_argmax_picks_one_per_group_and_leaves_groups_of_one_to_the_model():
    exs = [Example(id="a", question="q", choice="a", consistency_id="g"),
           Example(id="b", question="q", choice="b", consistency_id="g"),
           Example(id="c", question="r", choice="c", consistency_id="h"),  # a group of one, model says False
           Example(id="d", question="s", choice="d"),  # no group, model says False
           Example(id="e", question="t", choice="e")]  # no group, model says True
    assert group_argmax_labels(scores_of([-2.0, -1.0, -0.5, -3.0, 0.5]), exs) == [0, 1, 0, 0, 1]
    assert group_argmax_labels(scores_of([-2.0, -1.0, -0.5, -3.0, 0.5]), exs, true=0) == [0, 1, 0, 0, 1]  # label 0 is "true"


def test_the_search_start_gives_the_zero_shot_scores_so_the_report_does_not_score_them_again():
    """``ICM.zero_shot_scores_`` (the default start's evaluation with nothing labelled) decodes to the labels a
    fresh zero-shot scoring gives, in the caller's order; with clamps or the paper's random start it is None."""
    from scripted import OrderSensitiveScorer
    from test_search import TASK, pool, truth

    from icm_plugin.method.baselines import reference_labellings, zero_shot_scores
    from icm_plugin.method.search import ICM, ICMConfig

    exs = list(reversed(pool(6)))  # not the search's order
    scorer = OrderSensitiveScorer(truth(exs), strength=0.7, herd=1.0)
    icm = ICM(scorer, TASK, ICMConfig(seed=3)).fit(exs, progress=False)
    fresh = zero_shot_scores(scorer, TASK, exs)
    assert icm.zero_shot_scores_.shape == fresh.shape
    np.testing.assert_allclose(icm.zero_shot_scores_, fresh - np.logaddexp.reduce(fresh, axis=1, keepdims=True),
                               atol=1e-9)
    before = scorer.token_forwards
    given = reference_labellings(scorer, TASK, exs, "exactly_one", icm.zero_shot_scores_)
    assert scorer.token_forwards == before  # nothing scored again
    assert given == reference_labellings(scorer, TASK, exs, "exactly_one")
    clamped = ICM(scorer, TASK, ICMConfig(seed=3)).fit(exs, clamped={exs[0].id: 1}, progress=False)
    assert clamped.zero_shot_scores_ is None
    assert ICM(scorer, TASK, ICMConfig(seed=3, start="seed")).fit(exs, progress=False).zero_shot_scores_ is None
