"""The proposals of the ICM search: a consistency group's most likely rule-consistent assignment, and the two
proposal modes (``GroupProposal``, the default, and ``ExampleProposal``, the paper's) as small objects."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from icm_plugin.method.consistency import ConsistencyRule

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


class GroupProposal:
    """The default proposal: a sampled example's whole consistency group gets its most likely rule-consistent
    labels by the members' own scores (with ``always_add``, a partly labelled group keeps its labelled members).
    Exact for the group's part of P when the own group is hidden from its prompts; costs no model call."""

    name = "group"

    def active(self, search: Any, labels: Labels, cur: Any) -> dict[int, dict[int, int]]:
        """Every example whose step would change something -> the labels the step would give its group."""
        out: dict[int, dict[int, int]] = {}
        for members in search._groups.members.values():
            keep = search.config.always_add and any(labels[j] is None for j in members)
            best = search._best_assignment(members, labels, cur, keep)
            if any(labels[j] != y for j, y in best.items()):
                for j in members:
                    if j not in search._clamped:
                        out[j] = best
        return out

    def step(self, search: Any, i: int, labels: Labels, cur: Any, proposal: dict[int, int], it: int):
        """(new labels, their evaluation, conflict records, fields for the step's history record)."""
        new = list(labels)
        for j, y in proposal.items():
            new[j] = y
        return new, search._evaluate(new), self.conflicts(search, labels, cur, proposal, it), {"proposed": proposal[i]}

    @staticmethod
    def conflicts(search: Any, labels: Labels, cur: Any, proposal: dict[int, int], it: int) -> list[dict]:
        """A record when the members' own most likely labels break the rule (the proposal repaired it)."""
        members = list(proposal)
        free_choice: Labels = list(labels)
        for j in members:
            free_choice[j] = search._clamped.get(j, int(np.argmax(cur.logprobs[j])))
        return [search._violation_record(v, free_choice, proposal, "repaired", it)
                for v in search._rule.group_violations(members, free_choice)] if len(members) > 1 else []


class ExampleProposal:
    """The paper's proposal: the sampled example's most likely label; a violation it introduces is repaired with
    the best-U consistent assignment (ConsistencyFix), then the annealing rule judges the result."""

    name = "example"

    def active(self, search: Any, labels: Labels, cur: Any) -> dict[int, dict[int, int]]:
        """Every example whose step would change something (a label, or a repair) -> {example: its label}."""
        out: dict[int, dict[int, int]] = {}
        for i, lp in cur.logprobs.items():
            y = int(np.argmax(lp))
            if i in search._clamped:
                continue
            if labels[i] != y or (search._rule.violations(labels, {i})
                                  and self.repair(search, i, labels, list(labels), 0, cur)[0] != labels):
                out[i] = {i: y}
        return out

    def step(self, search: Any, i: int, labels: Labels, cur: Any, proposal: dict[int, int], it: int):
        new = list(labels)
        new[i] = proposal[i]
        new, new_eval, fixes, proposal_u = self.repair(search, i, labels, new, it)
        return new, new_eval, fixes, {"proposed": proposal[i], "proposal_U": proposal_u}

    @staticmethod
    def repair(search: Any, i: int, labels: Labels, new: Labels, it: int, cur: Any = None):
        """Example i's proposal ``new`` repaired: with force_repair the violations it introduced always, any other
        only if U does not fall. Returns the labels, their evaluation, the records and the proposal's U."""
        before = set(search._rule.violations(labels, {i})) if search.config.force_repair else None
        # a violation the step introduced is repaired whatever U says, so the proposal's own U is not needed then
        skip = before is not None and bool(set(search._rule.violations(new, {i})) - before)
        new_eval = cur if cur is not None else None if skip else search._evaluate(new)
        proposal_u = None if new_eval is None else new_eval.U
        return *search._consistency_fix(new, new_eval, {i}, it, before), proposal_u


PROPOSERS = {"group": GroupProposal, "example": ExampleProposal}
