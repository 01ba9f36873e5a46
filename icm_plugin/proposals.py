"""The group proposal of the ICM search: a consistency group's most likely rule-consistent assignment."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from icm_plugin.consistency import ConsistencyRule

Labels = list[int | None]
#: groups larger than this are decoded by the rule's exact decoder (``ConsistencyRule.decode``), not by
#: enumerating assignments (2 ** 8 label combinations, each checked against the rule, per group and step)
MAX_ENUMERATED_GROUP = 8
#: most label combinations one group's proposal enumerates (k labels)
MAX_ASSIGNMENTS = 2 ** MAX_ENUMERATED_GROUP


def best_assignment(rule: ConsistencyRule, members: list[int], labels: Labels, logprobs: dict[int, np.ndarray],
                    clamped: dict[int, int], term: Callable[[np.ndarray, int], float]) -> dict[int, int]:
    """The rule-consistent labels of one group (clamps kept) with the highest sum of the members' terms.

    members: the group's example indices; labels: the current labels (other groups matter to no rule here);
    logprobs: example index -> label log-probabilities; clamped: index -> label kept; term: the objective's
    per-example term. Returns index -> label for every member. Groups with more than MAX_ENUMERATED_GROUP free
    members (or more than MAX_ASSIGNMENTS label combinations) are decoded exactly by the rule
    (``ConsistencyRule.decode``, the same optimum). When the clamps allow no consistent assignment, the clamps are
    kept and the other members get their most likely label.
    """
    free = [j for j in members if j not in clamped]
    fixed = {j: clamped[j] for j in members if j in clamped}
    k = len(logprobs[members[0]])
    if len(free) > MAX_ENUMERATED_GROUP or k ** len(free) > MAX_ASSIGNMENTS:
        scores = {j: np.array([term(logprobs[j], y) for y in range(k)]) for j in members}
        best = rule.decode(members, scores, fixed)
        return best if best is not None else {j: fixed.get(j, int(np.argmax(logprobs[j]))) for j in members}
    best, best_score = None, -math.inf
    trial = list(labels)
    for values in itertools.product(range(k), repeat=len(free)):
        for j, y in zip(free, values, strict=True):
            trial[j] = y
        for j, y in fixed.items():
            trial[j] = y
        if rule.group_violations(members, trial) if len(members) > 1 else []:
            continue
        score = sum(term(logprobs[j], trial[j]) for j in members)
        if score > best_score:
            best, best_score = {j: int(trial[j]) for j in members}, score
    if best is None:  # clamps make every assignment inconsistent: keep them, decode the rest freely
        best = {j: fixed.get(j, int(np.argmax(logprobs[j]))) for j in members}
    return best
