"""The bootstrapping baseline: relabel the pool with the model's own labels as many-shot demonstrations.

Round 0 labels every example zero-shot; each later round scores every example with the current labels of the
other consistency groups as demonstrations, then decodes each group under the task's rule (exactly one True ->
the group's argmax). A few rounds recover much of the zero-shot -> golden gap at the cost of a few ICM steps
(the "challenges for unsupervised elicitation" baseline). Like ``ICM``: configure once, ``fit`` a pool; gold
labels never reach it.

The demonstrations for a group are all other groups (same-group candidates are left out: a small model copies the
label of a near-identical demonstration), laid out in divide-and-conquer order over groups so a prefix-sharing
scorer forwards each group about log2(#groups) times per round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icm_plugin.core.examples import Example, Groups, canonical_order
from icm_plugin.core.tasks import Task
from icm_plugin.method.baselines import zero_shot_scores
from icm_plugin.method.consistency import rule_decode
from icm_plugin.method.objective import group_requests
from icm_plugin.scoring.base import Scorer, ScoreRequest


def group_loo_requests(task: Task, examples: Sequence[Example], labels: Sequence[int],
                       group_order: Sequence[str], groups: Groups | None = None,
                       ) -> tuple[list[int], list[ScoreRequest]]:
    """One request per example, demonstrations = every OTHER group's examples with ``labels``, shared prefixes
    (the objective's leave-one-group-out layout, ``icm_plugin.method.objective.group_requests``)."""
    members = (groups if groups is not None else Groups(examples)).members
    return group_requests(task, examples, labels, group_order, context="group", members=members)


class Bootstrap:
    """Iterated many-shot self-labelling with rule decoding.

    rounds: relabelling rounds after the zero-shot one (stops early when the labels stop changing).
    rule: override the task's consistency rule (``none`` = plain argmax per example).
    seed: the order of the groups in the demonstrations (reshuffled each round).

    After ``fit``: ``labels_`` (0/1, pool order), ``scores_`` (last round's log-probabilities, shape (n, k)),
    ``history_`` (one dict per round: labels changed, true rate), ``rounds_``, ``token_forwards_``.
    """

    def __init__(self, scorer: Scorer, task: Task, rounds: int = 3, rule: str | None = None, seed: int = 0):
        self.scorer = scorer
        self.task = task
        self.rounds = rounds
        self.rule = rule
        self.seed = seed

    def fit(self, examples: Sequence[Example], initial_scores: np.ndarray | None = None) -> Bootstrap:
        """Label ``examples``; ``initial_scores`` reuses zero-shot log-probabilities computed elsewhere."""
        # worked in an order drawn from the seed and the ids, never the file's (see ``canonical_order``)
        perm = canonical_order(examples, self.seed)
        pool = [examples[p].without_gold() for p in perm]  # gold never reaches the baseline
        rule = self.rule or self.task.rule_for(pool)
        start = self.scorer.token_forwards
        rng = np.random.default_rng(self.seed)
        scores = zero_shot_scores(self.scorer, self.task, pool) if initial_scores is None else np.asarray(initial_scores)[perm]
        true = self.task.true_index if self.task.true_index is not None else 1
        labels = rule_decode(scores, pool, rule, true)
        history = [{"round": 0, "changed": None, "true_rate": float(np.mean(labels))}]
        view = Groups(pool)  # built once for every round
        groups = sorted(view.members)
        for r in range(1, self.rounds + 1):
            if len(groups) < 2:
                break
            order = [groups[i] for i in rng.permutation(len(groups))]
            index, reqs = group_loo_requests(self.task, pool, labels, order, view)
            out = self.scorer.label_logprobs(reqs)
            scores = np.zeros_like(out)
            scores[index] = out
            new = rule_decode(scores, pool, rule, true)
            changed = sum(a != b for a, b in zip(new, labels, strict=True))
            history.append({"round": r, "changed": changed, "true_rate": float(np.mean(new))})
            labels = new
            if changed == 0:
                break
        self.rule_name_ = rule
        back = np.argsort(perm)  # the search order's position of each example of the caller's
        self.labels_ = [int(labels[k]) for k in back]
        self.scores_ = scores[back]
        self.history_ = history
        self.rounds_ = len(history) - 1
        self.token_forwards_ = self.scorer.token_forwards - start
        return self
