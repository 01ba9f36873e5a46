"""The group proposal of the ICM search: a consistency group's most likely rule-consistent assignment."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from icm_plugin.consistency import ConsistencyRule

Labels = list[int | None]
#: groups larger than this are decoded member by member and repaired, not by enumerating assignments
MAX_ENUMERATED_GROUP = 12
#: most label combinations one group's proposal enumerates (2 ** 12, what two labels allowed before)
MAX_ASSIGNMENTS = 2 ** MAX_ENUMERATED_GROUP


def best_assignment(rule: ConsistencyRule, members: list[int], labels: Labels, logprobs: dict[int, np.ndarray],
                    clamped: dict[int, int], term: Callable[[np.ndarray, int], float]) -> dict[int, int]:
    """The rule-consistent labels of one group (clamps kept) with the highest sum of the members' terms.

    members: the group's example indices; labels: the current labels (other groups matter to no rule here);
    logprobs: example index -> label log-probabilities; clamped: index -> label kept; term: the objective's
    per-example term. Returns index -> label for every member. Groups with more than MAX_ENUMERATED_GROUP
    members (or more than MAX_ASSIGNMENTS label combinations, k labels) are decoded member by member and then
    repaired by the members' terms.
    """
    free = [j for j in members if j not in clamped]
    fixed = {j: clamped[j] for j in members if j in clamped}
    k = len(logprobs[members[0]])
    if len(free) > MAX_ENUMERATED_GROUP or k ** len(free) > MAX_ASSIGNMENTS:  # member-wise argmax, then repairs
        trial: Labels = list(labels)
        for j in free:
            trial[j] = int(np.argmax(logprobs[j]))
        for _ in range(len(members)):
            found = rule.violations(trial, set(members))
            if not found:
                break
            options = [o for o in rule.repairs(found[0], trial) if all(j not in fixed for j in o)]
            if not options:
                break
            for j, y in max(options, key=lambda o: sum(term(logprobs[j], y) for j, y in o.items())).items():
                trial[j] = y
        return {j: int(trial[j]) for j in members}
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
