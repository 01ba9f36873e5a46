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
