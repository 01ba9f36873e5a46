"""The one example type of the package, and gold-label normalisation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Example:
    """One item of the pool.

    ``label`` is the gold label (the index of a task's label, 0/1 for two labels) and is for evaluation only:
    the search never sees it (``ICM.fit`` strips it with :meth:`without_gold`). ``question``, ``choice`` and
    ``choice_2`` are the built-in prompts' slots; ``fields`` holds any other record field a task's prompt reads
    (a task file's template variables).
    """

    id: str
    question: str = ""
    choice: str = ""
    choice_2: str | None = None
    consistency_id: str | None = None
    consistency_key: str | None = None
    label: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    fields: dict[str, Any] = field(default_factory=dict, compare=False)

    def without_gold(self) -> Example:
        return replace(self, label=None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "question": self.question, "choice": self.choice}
        for name in ("choice_2", "consistency_id", "consistency_key", "label"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.metadata:
            out["metadata"] = self.metadata
        if self.fields:
            out["fields"] = self.fields
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        return cls(
            id=str(d["id"]),
            question=d.get("question", ""),
            choice=d.get("choice", ""),
            choice_2=d.get("choice_2"),
            consistency_id=d.get("consistency_id"),
            consistency_key=d.get("consistency_key"),
            label=d.get("label"),
            metadata=d.get("metadata") or {},
            fields=d.get("fields") or {},
        )


def group_key(ex: Example) -> str:
    """The example's consistency group as a string (``str(consistency_id)``, as the rules key it; an int id from
    the Python API is the same group as its string), or a group of its own."""
    return str(ex.consistency_id) if ex.consistency_id is not None else f"__single__{ex.id}"


class Groups:
    """The pool's consistency groups, built once from ``group_key``: the one view every part reads.

    The rules (``ConsistencyRule``, ``rule_decode``), the prompt layout (``objective.group_requests``), the
    search's proposals, the baselines (``group_argmax_labels``, ``Bootstrap``), the reliability rotation, the
    reports (``metrics.slot_table``, ``preflight.rule_coverage``) and the splits (batches, ``--limit``,
    ``icm train``'s held-out groups) take their groups from it, so "which examples go together" has one answer.

    ``members``: pool indices by group, groups in order of first member, members in ``order`` (the pool's own
    order unless given, e.g. ``canonical_order``'s). ``key[i]``: example ``i``'s group. ``ruled``: the groups a
    rule constrains, those of examples that have a ``consistency_id`` (an example without one is a group of its
    own that no rule checks).
    """

    __slots__ = ("key", "members", "ruled")

    def __init__(self, examples: Sequence[Example], order: Sequence[int] | None = None):
        self.key: tuple[str, ...] = tuple(group_key(e) for e in examples)
        members: dict[str, list[int]] = {}
        for i in (range(len(examples)) if order is None else order):
            members.setdefault(self.key[i], []).append(i)
        self.members: dict[str, list[int]] = members
        self.ruled: dict[str, list[int]] = {g: ms for g, ms in members.items()
                                            if examples[ms[0]].consistency_id is not None}

    def __len__(self) -> int:
        return len(self.members)

    def of(self, i: int) -> list[int]:
        """The members of example ``i``'s group (``i`` among them)."""
        return self.members[self.key[i]]

    def checkable(self) -> int:
        """How many groups a rule can check: ruled groups of two or more."""
        return sum(1 for ms in self.ruled.values() if len(ms) > 1)


def canonical_order(examples: Sequence[Example], seed: int = 0) -> list[int]:
    """A permutation of the pool's indices drawn from ``seed`` and the examples' ids alone, never file position.

    Groups come in the order of a hash of (seed, group), the members of a group in the order of a hash of
    (seed, id). The search and the baselines work on the pool in this order, so whatever order the records came
    in (TruthfulQA and GSM8K files list the true candidate first), the same pool and seed give the same
    demonstrations, the same draws and the same tie-breaks. Duplicate ids keep their file order.
    """
    def rank(kind: str, value: str) -> bytes:
        return hashlib.sha256(f"{seed}\x00{kind}\x00{value}".encode()).digest()

    keys = [(rank("group", group_key(e)), rank("id", str(e.id))) for e in examples]
    return sorted(range(len(examples)), key=lambda i: (keys[i], i))


def content_id(*parts: Any) -> str:
    """A stable id derived from content (never from position in the file)."""
    blob = json.dumps([p for p in parts], ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


_TRUE_STRINGS = {"true": 1, "false": 0, "1": 1, "0": 0}


def label_index(value: Any, choices: tuple[str, ...]) -> int:
    """A gold label given as a label value (``"sports"``), its index, or (two labels) bool / "True"/"False" /
    0/1 -> the label's index. Raises ValueError naming the labels for anything else."""
    if isinstance(value, str):
        if value in choices:
            return choices.index(value)
        stripped = [c.strip().lower() for c in choices]
        if value.strip().lower() in stripped and stripped.count(value.strip().lower()) == 1:
            return stripped.index(value.strip().lower())
    if len(choices) == 2:
        try:
            return normalize_label(value)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) < len(choices):
        return int(value)
    raise ValueError(f"label must be one of {list(choices)} or its index 0-{len(choices) - 1}, got {value!r}")


def normalize_label(value: Any) -> int:
    """Map a gold label given as bool, 0/1 or "True"/"False" to 0/1.

    Raises ValueError for anything else (the loader turns it into an ICMError naming the record).
    """
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_STRINGS:
        return _TRUE_STRINGS[value.strip().lower()]
    raise ValueError(f"label must be true/false, 0/1 or \"True\"/\"False\", got {value!r}")
