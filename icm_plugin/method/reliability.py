"""Is ICM likely wrong on this pool? Signals that need no gold, and the verdict a run reports.

ICM returns the labelling its objective likes best. Where the model's most salient concept is not the truth (a
feature more salient than truth: Canavan et al. 2026), that labelling is confidently wrong, and U alone cannot
tell. Three signals that need no gold label:

- ``agreement_zero_shot_rule``: the share of examples where ICM's label equals asking the model once, decoded
  under the task's rule. Asking once is a weak but independent reading of the model; a search that ends far
  from it has followed something the model does not say on its own.
- ``margin``: U of the result minus U of the same labelling with every consistency group's labels rotated by
  one member (pairs: swapped; an example alone or a task without groups: every label moved to the next one),
  divided by alpha: how many nats per example the model's in-context predictions prefer the labelling to an
  equally consistent alternative. Near 0, the model cannot tell the labelling from its rotation.
- ``against_model``: the share of examples whose label is not the one the model finds most likely given the
  final demonstrations (the rule chose it). Each such record is marked on its own (``records``), so a reviewer
  can filter them.
- ``majority_share``: the share of the most common label. A one-class labelling is the objective's best-known
  trap (a small model predicts its own majority label well); a rotation cannot expose it when no rule ties the
  members of a group to different labels (the margin then compares it with the other class).

``flag`` is true when any signal is past its threshold (``THRESHOLDS``; how they were chosen, and how well they
separate good runs from bad ones on the packaged and shared pools, is in docs/reliability.md). A flag says
"review before trusting these labels", not "wrong".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from icm_plugin.core.examples import Example, Groups

#: a run is flagged when agreement_zero_shot_rule is below, margin below, or against_model or majority_share above
#: these
THRESHOLDS = {"agreement_zero_shot_rule": 0.6, "margin": 0.5, "against_model": 0.25, "majority_share": 0.9}


def rotated_within(labels: Sequence[int], groups: Groups) -> list[int]:
    """Every consistency group's labels rotated by one member (for pairs: swapped): a labelling exactly as
    consistent as ``labels``. A group of one, or one whose members all share a label, is left as it is."""
    out = list(labels)
    for ms in groups.members.values():
        for a, b in zip(ms, ms[1:] + ms[:1], strict=True):
            out[a] = labels[b]
    return out


def rotated(labels: Sequence[int], examples: Sequence[Example], k: int) -> list[int]:
    """``rotated_within``, and a group of one, or one whose members all share a label (where rotating would
    change nothing), gets the next label ((y + 1) mod k) on every member."""
    groups = Groups(examples)
    out = rotated_within(labels, groups)
    for ms in groups.members.values():
        if len(ms) == 1 or len({labels[j] for j in ms}) == 1:
            for j in ms:
                out[j] = (labels[j] + 1) % k
    return out


def assess(icm: Any, examples: Sequence[Example], labels: Sequence[int], zero_shot_rule: Sequence[int] | None,
           thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The reliability verdict of a fitted ``ICM`` for its result ``labels`` (pool order).

    Costs one evaluation (the rotated labelling); the result's own evaluation is the search's last one.
    Returns ``{"flag", "reasons", "signals", "thresholds", "records"}``; ``records`` maps the id of every example
    whose label the model itself finds less likely than another to ``{"p_label", "p_best", "best"}``.
    """
    limits = dict(THRESHOLDS if thresholds is None else thresholds)
    k = len(icm.task.label_words)
    final = icm.evaluate(list(labels))
    alt = icm.evaluate(rotated(list(labels), examples, k))
    records: dict[str, dict[str, Any]] = {}
    for i, e in enumerate(examples):
        lp = final.logprobs[i]
        best = int(np.argmax(lp))
        if best != labels[i] and lp[best] > lp[labels[i]]:
            records[e.id] = {"p_label": round(float(np.exp(lp[labels[i]])), 4),
                             "p_best": round(float(np.exp(lp[best])), 4), "best": best}
    signals: dict[str, float | None] = {
        "agreement_zero_shot_rule": (None if zero_shot_rule is None else
                                     float(np.mean([a == b for a, b in zip(labels, zero_shot_rule, strict=True)]))),
        "margin": (final.U - alt.U) / icm.config.alpha,
        "against_model": len(records) / len(examples),
        "majority_share": float(np.max(np.bincount(np.asarray(labels, dtype=int), minlength=k))) / len(examples),
    }
    return verdict(signals, limits) | {"records": records}


def verdict(signals: dict[str, float | None], limits: dict[str, float] | None = None) -> dict[str, Any]:
    """The verdict on these signals under ``limits`` (``THRESHOLDS``): ``{"flag", "reasons", "signals",
    "thresholds"}``, the signals rounded to 4 places."""
    limits = dict(THRESHOLDS if limits is None else limits)
    reasons = judge(signals, limits)
    return {"flag": bool(reasons), "reasons": reasons,
            "signals": {key: (None if v is None else round(float(v), 4)) for key, v in signals.items()},
            "thresholds": limits}


def judge(signals: dict[str, float | None], limits: dict[str, float] | None = None) -> list[str]:
    """The reasons to flag a run with these signals (none: not flagged), under ``limits`` (``THRESHOLDS``); a
    signal with no limit there, or not measured (None), never flags."""
    limits = THRESHOLDS if limits is None else limits

    def past(key: str, below: bool) -> float | None:
        value, limit = signals.get(key), limits.get(key)
        if value is None or limit is None:
            return None
        return value if (value < limit if below else value > limit) else None

    reasons = []
    if (agree := past("agreement_zero_shot_rule", below=True)) is not None:
        reasons.append(f"ICM agrees with asking the model once (zero-shot + rule) on only {agree:.0%} of the "
                       "examples")
    if (margin := past("margin", below=True)) is not None:
        reasons.append(f"the model prefers these labels to the same labels rotated in each group by only "
                       f"{margin:.2f} nats per example")
    if (against := past("against_model", below=False)) is not None:
        reasons.append(f"{against:.0%} of the labels are ones the model itself finds less likely "
                       "than another given the final demonstrations")
    if (share := past("majority_share", below=False)) is not None:
        reasons.append(f"{share:.0%} of the examples got one label: the labelling may have collapsed to one class "
                       "(for a small model a one-class labelling is very predictable)")
    return reasons


def report_reliability(verdict: dict[str, Any]) -> dict[str, Any]:
    """report.json's ``reliability``: the verdict without its per-record list (labels.jsonl marks each record
    ``against_model``), with the count of those records."""
    return {k: v for k, v in verdict.items() if k != "records"} | {"records_against_model": len(verdict["records"])}


def merge_reliability(parts: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """One verdict for a run labelled in batches: flagged when any batch is; signals are the n-weighted means
    (the worst batch's verdict is in ``per_batch``). ``parts``: (batch size, report_reliability of the batch)."""
    n = sum(size for size, _ in parts)
    signals: dict[str, float | None] = {}
    for key in THRESHOLDS:
        vals = [(size, rel["signals"].get(key)) for size, rel in parts]
        signals[key] = (None if any(v is None for _, v in vals) or not n else
                        round(sum(size * v for size, v in vals) / n, 4))
    reasons = [f"batch {b + 1}: {r}" for b, (_, rel) in enumerate(parts) for r in rel["reasons"]]
    return {"flag": any(rel["flag"] for _, rel in parts), "reasons": reasons, "signals": signals,
            "thresholds": dict(parts[0][1]["thresholds"]) if parts else dict(THRESHOLDS),
            "records_against_model": sum(rel["records_against_model"] for _, rel in parts)}


def reliability_line(rel: dict[str, Any]) -> str:
    """The summary line `icm label` prints."""
    sig = rel["signals"]
    figures = ", ".join(f"{k} {v:.2f}" for k, v in sig.items() if v is not None)
    if rel["flag"]:
        return ("WARNING: these labels are likely wrong in places; review them before use: " + "; ".join(rel["reasons"])
                + f" ({figures}; see report.json 'reliability', and labels.jsonl 'against_model')")
    return f"reliability: not flagged ({figures})"
