"""Logical consistency rules: which labelled pairs (or groups) break a task's rule, and how to repair them.

No rule may read a gold label: rules see only ``consistency_id``, ``consistency_key`` and the labels the
search assigned. Labels are 0/1 ints; ``None`` means "not labelled yet".
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icm_plugin.examples import Example

Labels = Sequence[int | None]


@dataclass(frozen=True)
class Violation:
    """Members (pool indices) that together break ``rule``."""

    rule: str
    members: tuple[int, ...]


class ConsistencyRule(ABC):
    """A rule over groups of examples that share ``consistency_id``."""

    name: str

    def __init__(self, examples: Sequence[Example]):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, ex in enumerate(examples):
            if ex.consistency_id is not None:
                groups[str(ex.consistency_id)].append(i)
        self.examples = list(examples)
        self.groups = dict(groups)
        self.group_of = {i: g for g, members in groups.items() for i in members}

    @abstractmethod
    def group_violations(self, members: list[int], labels: Labels) -> list[Violation]:
        """Violations inside one group."""

    @abstractmethod
    def repairs(self, violation: Violation, labels: Labels) -> list[dict[int, int]]:
        """Assignments of the violation's members that satisfy the rule for them."""

    def violations(self, labels: Labels, touching: set[int] | None = None) -> list[Violation]:
        """All violations; with ``touching``, only those in the groups of those indices."""
        if touching is None:
            groups = self.groups.values()
        else:
            names = {self.group_of[i] for i in touching if i in self.group_of}
            groups = [self.groups[g] for g in sorted(names)]
        out: list[Violation] = []
        for members in groups:
            out.extend(self.group_violations(members, labels))
        return out

    def inconsistency(self, labels: Labels) -> int:
        """I(D): the number of violations."""
        return len(self.violations(labels))


class NoRule(ConsistencyRule):
    """No logical constraint (I(D) = 0): only mutual predictability guides the search."""

    name = "none"

    def group_violations(self, members, labels):
        return []

    def repairs(self, violation, labels):
        return []


class ExactlyOneRule(ConsistencyRule):
    """Exactly one member of each group is True.

    Violations: every labelled pair that is True/True, and a fully labelled group with no True (for a pair,
    that is the False/False pair). Alpaca's asymmetry ("A beats B" and "B beats A" cannot both hold, nor both
    fail) is this rule on the pair of orders.
    """

    name = "exactly_one"

    def group_violations(self, members, labels):
        out = []
        trues = [i for i in members if labels[i] == 1]
        for a, b in itertools.combinations(trues, 2):
            out.append(Violation(self.name, (a, b)))
        if len(members) > 1 and all(labels[i] == 0 for i in members):
            out.append(Violation(self.name, tuple(members)))
        return out

    def repairs(self, violation, labels):
        members = violation.members
        if all(labels[i] == 0 for i in members):
            # nobody True: each member in turn becomes the one True
            return [{i: int(i == t) for i in members} for t in members]
        # two Trues: keep one of them
        a, b = members
        return [{a: 1, b: 0}, {a: 0, b: 1}]


class KeyRule(ConsistencyRule):
    """Members with the same ``consistency_key`` get the same label; with ``exclusive``, members with
    different keys cannot both be True (two different final answers to one math problem cannot both be right).
    The rule is named ``key`` when exclusive and ``same_key`` when not; its violations are ``key:...`` either way.
    """

    name = "key"
    kind = "key"  # prefix of the violation names

    def __init__(self, examples: Sequence[Example], exclusive: bool = True):
        super().__init__(examples)
        self.exclusive = exclusive
        self.name = "key" if exclusive else "same_key"

    def group_violations(self, members, labels):
        out = []
        labelled = [i for i in members if labels[i] is not None]
        for a, b in itertools.combinations(labelled, 2):
            same_key = self.examples[a].consistency_key == self.examples[b].consistency_key
            if same_key and labels[a] != labels[b]:
                out.append(Violation(self.kind + ":same_key_same_label", (a, b)))
            elif not same_key and self.exclusive and labels[a] == 1 and labels[b] == 1:
                out.append(Violation(self.kind + ":different_keys_not_both_true", (a, b)))
        return out

    def repairs(self, violation, labels):
        a, b = violation.members
        if violation.rule.endswith("same_key_same_label"):
            return [{a: 1, b: 1}, {a: 0, b: 0}]
        return [{a: 1, b: 0}, {a: 0, b: 1}, {a: 0, b: 0}]


RULES = {
    "none": lambda ex: NoRule(ex),
    "exactly_one": lambda ex: ExactlyOneRule(ex),
    "key": lambda ex: KeyRule(ex, exclusive=True),
    "same_key": lambda ex: KeyRule(ex, exclusive=False),
}


def make_rule(name: str, examples: Sequence[Example]) -> ConsistencyRule:
    """Build a rule by name: none, exactly_one, key (same key => same label; different keys not both True), same_key."""
    if name not in RULES:
        raise ValueError(f"unknown consistency rule {name!r}; choose one of {sorted(RULES)}")
    return RULES[name](examples)


def rule_decode(scores: np.ndarray, examples: Sequence[Example], rule: str) -> list[int]:
    """The most likely labelling that satisfies ``rule``, group by group, from per-example log-probabilities.

    ``scores``: shape (n, 2), log p(False), log p(True). Rules: ``none`` (each example's argmax), ``exactly_one``
    (the group's most likely True; a group of one is free), ``same_key`` (members sharing a key share the label: the sign of their summed
    margin), ``key`` (same, and at most one key True: the best key if its margin is positive). Examples without
    a ``consistency_id`` get their own argmax, as the rules leave them free.
    """
    margin = scores[:, 1] - scores[:, 0]
    if rule == "none":
        return [int(m > 0) for m in margin]
    labels = [int(m > 0) for m in margin]  # examples outside any group have no constraint
    groups: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(examples):
        if e.consistency_id is not None:
            groups[str(e.consistency_id)].append(i)
    for members in groups.values():
        for i in members:
            labels[i] = 0
        if rule == "exactly_one":
            if len(members) == 1:  # the rule constrains groups of two or more
                labels[members[0]] = int(margin[members[0]] > 0)
                continue
            labels[max(members, key=lambda i: margin[i])] = 1
            continue
        by_key: dict[Any, list[int]] = defaultdict(list)
        for i in members:
            by_key[examples[i].consistency_key].append(i)
        key_margin = {k: float(sum(margin[i] for i in ms)) for k, ms in by_key.items()}
        if rule == "same_key":
            true_keys = {k for k, m in key_margin.items() if m > 0}
        elif rule == "key":
            best = max(key_margin, key=key_margin.__getitem__)
            true_keys = {best} if key_margin[best] > 0 else set()
        else:
            raise ValueError(f"unknown consistency rule {rule!r}")
        for k in true_keys:
            for i in by_key[k]:
                labels[i] = 1
    return labels
