"""Label sets to compare ICM against: zero-shot predictions (per claim, and the per-group argmax)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icm_plugin.core.examples import Example, Groups, canonical_order
from icm_plugin.core.tasks import Task
from icm_plugin.scoring.base import Scorer, ScoreRequest


def zero_shot_scores(scorer: Scorer, task: Task, examples: Sequence[Example]) -> np.ndarray:
    """log p(label word | prompt) with no demonstrations, shape (n, k)."""
    return scorer.label_logprobs([ScoreRequest((), task.prompt(e)) for e in examples])


def zero_shot_labels(scores: np.ndarray) -> list[int]:
    """Each example's most likely label (two labels: True when the model prefers " True"; a tie is label 0)."""
    return [int(np.argmax(s)) for s in scores]


def group_argmax_labels(scores: np.ndarray, examples: Sequence[Example], true: int = 1) -> list[int]:
    """Two labels: per consistency group, the candidate with the highest p(true) is true, the others false; a group
    of one (or an example without a group) is true when the model prefers true, as ``rule_decode`` leaves it."""
    margin = scores[:, true] - scores[:, 1 - true]
    chosen = set()
    for ms in Groups(examples, canonical_order(examples)).members.values():  # ties break by the ids
        best = max(ms, key=lambda i: margin[i])  # the first of equal margins in the ids' order
        if len(ms) > 1 or margin[best] > 0:
            chosen.add(best)
    return [true if i in chosen else 1 - true for i in range(len(examples))]


def reference_labellings(scorer: Scorer, task: Task, examples: Sequence[Example], rule: str,
                         scores: np.ndarray | None = None) -> dict[str, list[int]]:
    """What asking the model once gives: ``zero_shot`` (each claim's own answer) and ``zero_shot_rule`` (the same
    scores decoded under the task's consistency rule), for the run report to stand ICM's labels beside.
    ``scores``: zero-shot log-probabilities already computed (``ICM.zero_shot_scores_``), else scored here."""
    from icm_plugin.method.consistency import rule_decode

    pool = [e.without_gold() for e in examples]
    scores = zero_shot_scores(scorer, task, pool) if scores is None else np.asarray(scores)
    true = task.true_index if task.true_index is not None else 1
    return {"zero_shot": zero_shot_labels(scores), "zero_shot_rule": rule_decode(scores, pool, rule, true)}
