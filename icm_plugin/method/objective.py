"""The ICM objective U(D) = alpha * P(D) - I(D), and the prompts that score it.

Mutual predictability P(D) is the MEAN, over labelled examples, of a per-example score of its label given the
other labelled examples as demonstrations. Two choices, each a named option (``Objective``):

- ``scale``: ``"logodds"`` (default, the authors' code): the log-odds of the example's label against all the others,
  log q(y) - log(1 - q(y)) with q normalised over the k label words; for two labels that is +(log p(True) -
  log p(False)) for a label 1 and the negative for a label 0, exactly. ``"logprob"`` (the paper's formula, as a
  mean): log q(y). See docs/k-labels.md.
  Log-odds are unbounded above, so adding an example whose label the model agrees with raises P; a mean
  log-probability is at most 0 and every addition below the mean lowers it.
- ``context``: ``"group"`` (default): an example's demonstrations never include a member of its own consistency
  group (leave-one-GROUP-out). A small model copies the label of a near-identical demonstration, and under a
  rule like exactly-one the other candidate of the same question always carries the opposite label, so with
  the own group shown P rewards the labelling that makes that copying look right. ``"loo"`` (the paper's
  setting, laid out as the authors' code does): every other labelled example, in one order for the whole pool
  (groups in the search's group order, members in pool order), so the own group's other members sit at their
  group's place in that order, not next to the query. It forgoes the divide-and-conquer prefix sharing below.
- ``normalise``: ``"pool"`` (default): the labelled examples' gain over chance, summed and divided by the pool
  size, so an unlabelled example counts as chance and labelling a group raises P by what the model gains on
  it; for a complete labelling this is the mean. ``"labelled"`` (the authors' code): the mean over the
  labelled examples, under which adding an example below the current mean lowers P, so a cold search stops
  labelling.

Layout: the consistency groups of the pool are put in one fixed order (drawn once per search) and laid out by
divide and conquer over groups (``loo_contexts``): split the groups into halves A and B, B's prompts begin with
all of A, A's with all of B, recurse. The members of one group share one context, unlabelled groups add no
demonstrations but are scored too (so every example's proposal comes from the same evaluation), and the
position of a group's block in every prompt does not depend on which other groups are labelled. A
prefix-sharing scorer forwards each labelled group about log2(#groups) times per evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from icm_plugin.core.examples import Example, Groups
from icm_plugin.core.tasks import Task
from icm_plugin.method.consistency import ConsistencyRule
from icm_plugin.scoring.base import Scorer, ScoreRequest

Labels = Sequence[int | None]
CONTEXTS = ("group", "loo")
SCALES = ("logodds", "logprob")
NORMALISATIONS = ("pool", "labelled")


@dataclass(frozen=True)
class Objective:
    """How U is computed: alpha (weight of P), the demonstrations an example sees, and the scale of P."""

    alpha: float = 50.0
    context: str = "group"
    scale: str = "logodds"
    normalise: str = "pool"

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown context {self.context!r}; choose one of {CONTEXTS}")
        if self.scale not in SCALES:
            raise ValueError(f"unknown scale {self.scale!r}; choose one of {SCALES}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {self.normalise!r}; choose one of {NORMALISATIONS}")

    def chance(self, k: int = 2) -> float:
        """An example's term when the model cannot tell its k labels apart (q = 1/k): log-odds -log(k - 1), 0 for
        two labels; log-probability -log k."""
        return -math.log(k - 1) if self.scale == "logodds" else -math.log(k)

    def mutual_predictability(self, terms: Sequence[float], pool_size: int, k: int = 2) -> float:
        """P from the labelled examples' terms: their mean ("labelled", the authors' code), or their gain over
        chance summed and divided by the pool size ("pool"), so an unlabelled example counts as chance."""
        if not terms:
            return 0.0
        if self.normalise == "labelled":
            return float(np.mean(terms))
        return float(np.sum(np.asarray(terms) - self.chance(k)) / pool_size)

    def term(self, logprobs: np.ndarray, label: int) -> float:
        """One example's contribution to P for ``label``, from its log-probabilities normalised over the k labels.

        logodds: log q(y) - log(sum of the other labels' q); for two labels that is the signed margin
        log q(y) - log q(other), bit for bit (a log-sum-exp of one value is that value)."""
        if self.scale == "logprob":
            return float(logprobs[label])
        if len(logprobs) == 2:
            margin = float(logprobs[1] - logprobs[0])
            return margin if label == 1 else -margin
        others = np.delete(logprobs, label)
        return float(logprobs[label] - np.logaddexp.reduce(others))


def loo_contexts(items: Sequence) -> dict:
    """For each item, the other items in the order its prompt shows them (divide and conquer).

    Split the ordered items into halves A and B; B's prompts begin with all of A, A's with all of B; recurse.
    Prompts in one half share the other half as a prefix, so a prefix-sharing scorer forwards each half once
    per level: n * log2(n) demonstrations in all instead of n * (n - 1).
    """
    out: dict = {}
    stack: list[tuple[list, list]] = [(list(items), [])]
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


def group_requests(task: Task, examples: Sequence[Example], labels: Labels, group_order: Sequence[str],
                   context: str = "group", members: dict[str, list[int]] | None = None,
                   ) -> tuple[list[int], list[ScoreRequest]]:
    """One request per example of the groups in ``group_order``, labelled or not (see the module docstring).

    Demonstrations are the labelled members of the other groups, in divide-and-conquer order over groups; with
    ``context="loo"`` every other labelled example in ``group_order`` (the own group's at its place in it).
    Returns the pool indices and their requests, in the same order.
    """
    members = members if members is not None else Groups(examples).members
    demo = {i: task.demonstration(examples[i], int(labels[i]))
            for g in group_order for i in members[g] if labels[i] is not None}
    if context == "loo":
        index = [i for g in group_order for i in members[g]]
        return index, [ScoreRequest(tuple(d for j, d in demo.items() if j != i), task.prompt(examples[i]))
                       for i in index]
    block = {g: tuple(demo[i] for i in members[g] if i in demo) for g in group_order}
    contexts = loo_contexts(list(group_order))
    index: list[int] = []
    reqs: list[ScoreRequest] = []
    for g in group_order:
        prefix = tuple(d for other in contexts[g] for d in block[other])
        for i in members[g]:
            index.append(i)
            reqs.append(ScoreRequest(prefix, task.prompt(examples[i])))
    return index, reqs


def loo_requests(task: Task, examples: Sequence[Example], labels: Labels, order: Sequence[int]) -> tuple[list[int], list[ScoreRequest]]:
    """Per-example leave-one-out requests in divide-and-conquer order over examples (a request set the scorer
    tests and benchmarks use; the objective lays prompts out by group, see ``group_requests``)."""
    labelled = [i for i in order if labels[i] is not None]
    contexts = loo_contexts(labelled)
    demo = {i: task.demonstration(examples[i], int(labels[i])) for i in labelled}
    reqs = [ScoreRequest(tuple(demo[j] for j in contexts[i]), task.prompt(examples[i])) for i in labelled]
    return labelled, reqs


def context_request(task: Task, examples: Sequence[Example], labels: Labels, order: Sequence[int], i: int) -> ScoreRequest:
    """The request for example i with every OTHER labelled example as a demonstration, in ``order``."""
    labelled = [j for j in order if labels[j] is not None and j != i]
    return ScoreRequest(tuple(task.demonstration(examples[j], int(labels[j])) for j in labelled), task.prompt(examples[i]))


@dataclass(frozen=True)
class Evaluation:
    """U and its parts for one labelling.

    ``logprobs[i]``: log p(label) for each of the task's labels, for example i given the demonstrations its
    layout shows (every example of the pool is scored, labelled or not, so proposals need no extra query).
    """

    U: float
    mutual_predictability: float
    inconsistencies: int
    logprobs: dict[int, np.ndarray]


def evaluate(scorer: Scorer, task: Task, rule: ConsistencyRule, examples: Sequence[Example], labels: Labels,
             group_orders: Sequence[Sequence[str]], objective: Objective,
             groups: Groups | None = None) -> Evaluation:
    """U(D) = alpha * P(D) - I(D) for the labelling ``labels`` (None = unlabelled).

    ``group_orders``: one or more orders of the groups; with several, each example's log-probabilities are the
    renormalised mean over the layouts (one request per example and layout, all sent in one call). ``groups``:
    the pool's ``Groups`` (built here when not given).
    """
    inconsistencies = rule.inconsistency(labels)
    members = (groups if groups is not None else Groups(examples)).members
    index: list[int] = []
    reqs: list[ScoreRequest] = []
    for order in group_orders:
        idx, rs = group_requests(task, examples, labels, order, objective.context, members)
        index += idx
        reqs += rs
    scores = scorer.label_logprobs(reqs)
    sums: dict[int, np.ndarray] = {}
    for k, i in enumerate(index):
        sums[i] = sums[i] + scores[k] if i in sums else np.array(scores[k], dtype=np.float64)
    logprobs = {i: _renormalise(v / len(group_orders)) for i, v in sums.items()}
    terms = [objective.term(logprobs[i], int(labels[i])) for i in logprobs if labels[i] is not None]
    p = objective.mutual_predictability(terms, len(examples), len(task.label_words))
    return Evaluation(objective.alpha * p - inconsistencies, p, inconsistencies, logprobs)


def _renormalise(lp: np.ndarray) -> np.ndarray:
    return lp - np.logaddexp.reduce(lp)
