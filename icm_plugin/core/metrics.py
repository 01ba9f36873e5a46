"""Agreement of labels with gold, and the warning signs of a degenerate labelling."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from icm_plugin.core.examples import Example, Groups


def accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(gold)))


def balanced_accuracy(pred: Sequence[int], gold: Sequence[int]) -> float:
    """Mean per-class recall over the classes present in gold (0.5 for a one-class labelling of 2 classes)."""
    p, g = np.asarray(pred), np.asarray(gold)
    return float(np.mean([np.mean(p[g == c] == c) for c in np.unique(g)]))


def label_balance(pred: Sequence[int], choices: Sequence[str] | None = None) -> dict:
    """How many examples got each label: two labels as ``true``/``false``/``true_rate`` (label 1 = true); more
    labels as ``counts`` (label value -> n) and ``largest_share``."""
    p = np.asarray(pred)
    if choices is None or len(choices) == 2:
        return {"true": int(p.sum()), "false": int(len(p) - p.sum()), "true_rate": float(p.mean()) if len(p) else 0.0}
    counts = {str(c): int(np.sum(p == j)) for j, c in enumerate(choices)}
    return {"counts": counts, "largest_share": max(counts.values()) / len(p) if len(p) else 0.0}


def collapsed(pred: Sequence[int], threshold: float = 0.95) -> bool:
    """A labelling with (almost) only one class: the objective's trap (one label on ``threshold`` of the pool)."""
    if not len(pred):
        return False
    _, counts = np.unique(np.asarray(pred), return_counts=True)
    return float(counts.max()) / len(pred) >= threshold  # two labels: true rate >= threshold or <= 1 - threshold


def slot_table(examples: Sequence[Example], pred: Sequence[int]) -> dict[str, float]:
    """True-rate of the labels by the example's position inside its consistency group (input order).

    If labels follow the slot rather than the content (e.g. "the first candidate is True"), this shows it.
    """
    by_slot: dict[int, list[int]] = defaultdict(list)
    for members in Groups(examples).members.values():
        for slot, i in enumerate(members):
            by_slot[slot].append(pred[i])
    return {f"slot_{s}": float(np.mean(v)) for s, v in sorted(by_slot.items())}


def gold_report(examples: Sequence[Example], pred: Sequence[int]) -> dict[str, float | int | None]:
    """accuracy and balanced_accuracy against gold over the examples that have gold (``gold_n`` of them; both
    None when none has)."""
    pairs = [(y, e.label) for e, y in zip(examples, pred, strict=True) if e.label is not None]
    if not pairs:
        return {"accuracy": None, "balanced_accuracy": None, "gold_n": 0}
    p, g = [y for y, _ in pairs], [t for _, t in pairs]
    return {"accuracy": accuracy(p, g), "balanced_accuracy": balanced_accuracy(p, g), "gold_n": len(pairs)}


def reference_report(examples: Sequence[Example], pred: Sequence[int],
                     references: dict[str, Sequence[int]]) -> dict[str, dict[str, float | None]]:
    """For each reference labelling (e.g. zero-shot): its agreement with ``pred`` (no gold needed) and, over
    the examples that have gold, its accuracy and balanced accuracy."""
    out: dict[str, dict[str, float | None]] = {}
    has_gold = [k for k, e in enumerate(examples) if e.label is not None]
    gold = [examples[k].label for k in has_gold]
    for name, ref in references.items():
        row: dict[str, float | None] = {"agreement": accuracy(ref, pred), "accuracy": None, "balanced_accuracy": None}
        if has_gold:
            sub = [ref[k] for k in has_gold]
            row.update(accuracy=accuracy(sub, gold), balanced_accuracy=balanced_accuracy(sub, gold))
        out[name] = row
    return out
