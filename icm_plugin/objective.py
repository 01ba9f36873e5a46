"""The ICM objective U(D) = alpha * P(D) - I(D).

Mutual predictability P(D) here is the MEAN over labelled examples of log p(y_i | x_i, D minus i), in nats,
with p normalised over the label words. (The paper writes a sum; the authors' code uses a mean of signed
log-odds. We use the mean log-probability so alpha means the same thing at every pool size: alpha=50 makes
one nat of average log-probability worth 50 violations, and one nat on ONE example worth 50/n violations,
so with the paper's alpha a violation outweighs a small change in one example's score and ConsistencyFix
can repair it. See tests/test_objective.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icm_plugin.consistency import ConsistencyRule
from icm_plugin.examples import Example
from icm_plugin.scoring.base import Scorer, ScoreRequest
from icm_plugin.tasks import Task

Labels = Sequence[int | None]


def loo_contexts(items: Sequence[int]) -> dict[int, list[int]]:
    """For each item, the other items in the order its prompt shows them (divide and conquer).

    Split the ordered items into halves A and B; B's prompts begin with all of A, A's with all of B; recurse.
    Prompts in one half share the other half as a prefix, so a prefix-sharing scorer forwards each half once
    per level: n * log2(n) demonstrations in all instead of n * (n - 1).
    """
    out: dict[int, list[int]] = {}
    stack: list[tuple[list[int], list[int]]] = [(list(items), [])]
    while stack:
        group, prefix = stack.pop()
        if len(group) == 1:
            out[group[0]] = prefix
            continue
        mid = len(group) // 2
        a, b = group[:mid], group[mid:]
        stack.append((b, prefix + a))
        stack.append((a, prefix + b))
    return out


def loo_requests(task: Task, examples: Sequence[Example], labels: Labels, order: Sequence[int]) -> tuple[list[int], list[ScoreRequest]]:
    """Leave-one-out requests for every labelled example, demonstrations in divide-and-conquer order."""
    labelled = [i for i in order if labels[i] is not None]
    contexts = loo_contexts(labelled)
    demo = {i: task.demonstration(examples[i], int(labels[i])) for i in labelled}
    reqs = [ScoreRequest(tuple(demo[j] for j in contexts[i]), task.prompt(examples[i])) for i in labelled]
    return labelled, reqs


def context_request(task: Task, examples: Sequence[Example], labels: Labels, order: Sequence[int], i: int) -> ScoreRequest:
    """The request for example i with every OTHER labelled example as a demonstration (the proposal query)."""
    labelled = [j for j in order if labels[j] is not None and j != i]
    # the same order a leave-one-out sweep gives its last item, so the prefix is shared with it
    return ScoreRequest(tuple(task.demonstration(examples[j], int(labels[j])) for j in labelled), task.prompt(examples[i]))


@dataclass(frozen=True)
class Evaluation:
    """U and its parts for one labelling; ``logprobs[i]`` is the LOO log-probability of example i's label."""

    U: float
    mutual_predictability: float
    inconsistencies: int
    logprobs: dict[int, np.ndarray]


def evaluate(
    scorer: Scorer, task: Task, rule: ConsistencyRule, examples: Sequence[Example], labels: Labels,
    order: Sequence[int], alpha: float,
) -> Evaluation:
    """U(D) = alpha * P(D) - I(D) for the labelling ``labels`` (None = unlabelled)."""
    labelled, reqs = loo_requests(task, examples, labels, order)
    inconsistencies = rule.inconsistency(labels)
    if len(labelled) < 2:
        return Evaluation(-float(inconsistencies), 0.0, inconsistencies, {})
    scores = scorer.label_logprobs(reqs)
    per_example = {i: scores[k] for k, i in enumerate(labelled)}
    p = float(np.mean([scores[k][int(labels[i])] for k, i in enumerate(labelled)]))
    return Evaluation(alpha * p - inconsistencies, p, inconsistencies, per_example)
