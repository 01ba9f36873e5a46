"""Logical consistency rules: which labelled pairs (or groups) break a task's rule, and how to repair them.

No rule may read a gold label: rules see only ``consistency_id``, ``consistency_key`` and the labels the
search assigned. Labels are label indices (0/1 for two labels); ``None`` means "not labelled yet". The
two-label rules (exactly one, key) know which label is "true" (``true``, the task's ``true_index``).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from icm_plugin.core.examples import Example, Groups, canonical_order

Labels = Sequence[int | None]


@dataclass(frozen=True)
class Violation:
    """Members (pool indices) that together break ``rule``."""

    rule: str
    members: tuple[int, ...]


class ConsistencyRule(ABC):
    """A rule over groups of examples that share ``consistency_id``."""

    name: str
    #: label counts the rule can take (None: any)
    max_labels: int | None = None

    def __init__(self, examples: Sequence[Example], true: int = 1, groups: Groups | None = None):
        groups = groups if groups is not None else Groups(examples)
        self.examples = list(examples)
        self.true, self.false = true, 1 - true
        self.groups = groups.ruled
        self.group_of = {i: g for g, members in self.groups.items() for i in members}

    @abstractmethod
    def group_violations(self, members: list[int], labels: Labels) -> list[Violation]:
        """Violations inside one group."""

    @abstractmethod
    def repairs(self, violation: Violation, labels: Labels) -> list[dict[int, int]]:
        """Assignments of the violation's members that satisfy the rule for them."""

    def decode(self, members: list[int], scores: dict[int, np.ndarray], fixed: dict[int, int]) -> dict[int, int] | None:
        """The rule-consistent labels of one group with the highest sum of ``scores[j][label]``, ``fixed`` labels
        kept; None when the fixed labels allow none. Exact and linear in the group's size (no enumeration)."""
        return {j: fixed.get(j, int(np.argmax(scores[j]))) for j in members}

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
    max_labels = 2

    def group_violations(self, members, labels):
        out = []
        trues = [i for i in members if labels[i] == self.true]
        for a, b in itertools.combinations(trues, 2):
            out.append(Violation(self.name, (a, b)))
        if len(members) > 1 and all(labels[i] == self.false for i in members):
            out.append(Violation(self.name, tuple(members)))
        return out

    def repairs(self, violation, labels):
        members = violation.members
        t, f = self.true, self.false
        if all(labels[i] == f for i in members):
            # nobody True: each member in turn becomes the one True
            return [{i: (t if i == one else f) for i in members} for one in members]
        # two Trues: keep one of them
        a, b = members
        return [{a: t, b: f}, {a: f, b: t}]

    def decode(self, members, scores, fixed):
        t, f = self.true, self.false
        if len(members) == 1:
            return super().decode(members, scores, fixed)
        trues = [j for j in members if fixed.get(j) == t]
        if len(trues) > 1:
            return None
        candidates = trues or [j for j in members if j not in fixed]
        if not candidates:
            return None
        one = max(candidates, key=lambda j: scores[j][t] - scores[j][f])
        return {j: t if j == one else f for j in members}


class KeyRule(ConsistencyRule):
    """Members with the same ``consistency_key`` get the same label; with ``exclusive``, members with
    different keys cannot both be True (two different final answers to one math problem cannot both be right).
    The rule is named ``key`` when exclusive and ``same_key`` when not; its violations are ``key:...`` either way.
    A member without a ``consistency_key`` is bound by neither relation.
    """

    name = "key"
    kind = "key"  # prefix of the violation names

    def __init__(self, examples: Sequence[Example], exclusive: bool = True, true: int = 1,
                 groups: Groups | None = None):
        super().__init__(examples, true, groups)
        self.exclusive = exclusive
        self.name = "key" if exclusive else "same_key"
        self.max_labels = 2 if exclusive else None

    def group_violations(self, members, labels):
        out = []
        # a member without a consistency_key is bound by no key relation (a missing key is not a key)
        labelled = [i for i in members if labels[i] is not None and self.examples[i].consistency_key is not None]
        for a, b in itertools.combinations(labelled, 2):
            same_key = self.examples[a].consistency_key == self.examples[b].consistency_key
            if same_key and labels[a] != labels[b]:
                out.append(Violation(self.kind + ":same_key_same_label", (a, b)))
            elif not same_key and self.exclusive and labels[a] == self.true and labels[b] == self.true:
                out.append(Violation(self.kind + ":different_keys_not_both_true", (a, b)))
        return out

    def repairs(self, violation, labels):
        a, b = violation.members
        t, f = self.true, self.false
        if violation.rule.endswith("same_key_same_label"):
            if labels[a] is not None and labels[b] is not None and {labels[a], labels[b]} != {t, f}:
                return [{a: labels[a], b: labels[a]}, {a: labels[b], b: labels[b]}]  # k > 2: one of the two
            return [{a: t, b: t}, {a: f, b: f}]
        return [{a: t, b: f}, {a: f, b: t}, {a: f, b: f}]

    def decode(self, members, scores, fixed):
        out = super().decode(members, scores, fixed)  # key-less members: free
        by_key: dict[Any, list[int]] = defaultdict(list)
        for j in members:
            if self.examples[j].consistency_key is not None:
                by_key[self.examples[j].consistency_key].append(j)
        k = len(scores[members[0]])
        forced: dict[Any, int] = {}
        for key, ms in by_key.items():
            given = {fixed[j] for j in ms if j in fixed}
            if len(given) > 1:
                return None
            if given:
                forced[key] = given.pop()
        total = {key: np.sum([scores[j] for j in ms], axis=0) for key, ms in by_key.items()}
        if not self.exclusive:
            chosen = {key: forced.get(key, int(np.argmax(total[key]))) for key in by_key}
        else:  # at most one key true: all false, or the key whose truth gains most
            t, f = self.true, self.false
            if any(forced.get(key, f) not in (t, f) for key in by_key) or k != 2:
                return None
            fixed_true = [key for key in by_key if forced.get(key) == t]
            if len(fixed_true) > 1:
                return None
            free = [key for key in by_key if key not in forced]
            gain = {key: total[key][t] - total[key][f] for key in free}
            best = fixed_true[0] if fixed_true else max(free, key=gain.__getitem__, default=None)
            if not fixed_true and (best is None or gain[best] <= 0):
                best = None
            chosen = {key: t if key == best else f for key in by_key}
        for key, ms in by_key.items():
            for j in ms:
                out[j] = chosen[key]
        return out


RULES = {
    "none": lambda ex, true, groups: NoRule(ex, true, groups),
    "exactly_one": lambda ex, true, groups: ExactlyOneRule(ex, true, groups),
    "key": lambda ex, true, groups: KeyRule(ex, exclusive=True, true=true, groups=groups),
    "same_key": lambda ex, true, groups: KeyRule(ex, exclusive=False, true=true, groups=groups),
}


def make_rule(name: str, examples: Sequence[Example], k: int = 2, true: int | None = 1,
              groups: Groups | None = None) -> ConsistencyRule:
    """Build a rule by name: none, exactly_one, key (same key => same label; different keys not both True),
    same_key. ``k``: the task's label count; ``true``: the label a two-label rule treats as true; ``groups``:
    the pool's ``Groups`` when the caller has built them.
    Raises ValueError for an unknown name, ICMError for a two-label rule on k > 2 labels."""
    if name not in RULES:
        raise ValueError(f"unknown consistency rule {name!r}; choose one of {sorted(RULES)}")
    rule = RULES[name](examples, 1 if true is None else true, groups)
    if rule.max_labels is not None and k > rule.max_labels:
        from icm_plugin.errors import ICMError

        raise ICMError(f"rule {name!r} needs two labels (one of them \"true\") and this task has {k}; "
                       "use rule same_key or none")
    return rule


def rule_decode(scores: np.ndarray, examples: Sequence[Example], rule: str, true: int = 1) -> list[int]:
    """The most likely labelling that satisfies ``rule``, group by group, from per-example log-probabilities.

    ``scores``: shape (n, k), log p(label) per label. Rules: ``none`` (each example's argmax), ``exactly_one``
    (the group's most likely true; a group of one is free), ``same_key`` (members sharing a key share the label:
    the argmax of their summed log-probabilities, for two labels the sign of their summed margin), ``key``
    (same, and at most one key true: the best key if its margin is positive). ``true``: the "true" label of a
    two-label rule. Examples without a ``consistency_id`` get their own argmax, as the rules leave them free.
    """
    k = scores.shape[1]
    labels = [int(np.argmax(s)) for s in scores]  # examples outside any group have no constraint
    if rule == "none":
        return labels
    false = 1 - true
    margin = scores[:, true] - scores[:, false] if k == 2 else None
    # members in the ids' order: ties break by the ids, not by file position
    for members in Groups(examples, canonical_order(examples)).ruled.values():
        if rule == "exactly_one":
            for i in members:
                labels[i] = false
            if len(members) == 1:  # the rule constrains groups of two or more
                labels[members[0]] = true if margin[members[0]] > 0 else false
                continue
            labels[max(members, key=lambda i: margin[i])] = true
            continue
        by_key: dict[Any, list[int]] = defaultdict(list)
        for i in members:  # a member without a key is free: it keeps its own argmax
            if examples[i].consistency_key is not None:
                by_key[examples[i].consistency_key].append(i)
        if not by_key:
            continue
        if rule == "same_key":
            for ms in by_key.values():
                if k == 2:
                    y = true if float(sum(margin[i] for i in ms)) > 0 else false
                else:
                    y = int(np.argmax(np.sum(scores[ms], axis=0)))
                for i in ms:
                    labels[i] = y
            continue
        if rule != "key":
            raise ValueError(f"unknown consistency rule {rule!r}")
        key_margin = {key: float(sum(margin[i] for i in ms)) for key, ms in by_key.items()}
        best = max(key_margin, key=key_margin.__getitem__)
        for key, ms in by_key.items():
            for i in ms:
                labels[i] = true if key == best and key_margin[best] > 0 else false
    return labels
