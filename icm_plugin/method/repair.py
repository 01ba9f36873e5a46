"""ConsistencyFix (Wen et al. 2025, Algorithm 2): repair rule violations while a repair does not lower U.

The step's own violations are the exception: with ``force_repair`` a violation the step introduced (one that was
not there before it, in the groups it touched) is repaired whatever the repair does to U, so a proposal that
breaks a rule is never kept; a violation that was there before is repaired only if U does not fall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from icm_plugin.method.consistency import ConsistencyRule, Violation
from icm_plugin.method.objective import Evaluation

Labels = list[int | None]


def consistency_fix(rule: ConsistencyRule, labels: Labels, cur: Evaluation | None,
                    evaluate: Callable[[Labels], Evaluation], clamped: dict[int, int], steps: int,
                    note: Callable[[Violation, Labels, Labels, str], dict[str, Any]],
                    touched: set[int] | None = None, before: set[Violation] | None = None,
                    ) -> tuple[Labels, Evaluation, list[dict[str, Any]]]:
    """Repair the violations in the groups of ``touched`` (None: all), at most ``steps`` of them.

    For each violation, every assignment of its members that satisfies the rule, keeps ``clamped`` labels and
    changes something is scored; the best is applied if its U is at least the current U, or, when ``before`` is
    given (force repair), if the violation is not in ``before``: the step introduced it. Those are handled
    first. ``cur``: the evaluation of ``labels`` (None: not computed yet; computed when a repair must be judged).
    ``note(v, labels_before, labels_after, resolution)``: one record per violation met. Returns the new labels,
    their evaluation and the records.
    """
    records: list[dict[str, Any]] = []
    skipped: set[Violation] = set()
    for _ in range(steps):
        found = [v for v in rule.violations(labels, touched) if v not in skipped]
        if not found:
            break
        forced = [v for v in found if before is not None and v not in before]
        v = (forced or found)[0]
        options = [o for o in rule.repairs(v, labels)
                   if all(clamped.get(j, y) == y for j, y in o.items()) and any(labels[j] != y for j, y in o.items())]
        if not options:
            records.append(note(v, labels, labels, "kept (clamped)"))
            skipped.add(v)
            continue
        candidates = []
        for o in options:
            cand = list(labels)
            for j, y in o.items():
                cand[j] = y
            candidates.append((cand, evaluate(cand)))
        best_labels, best_eval = max(candidates, key=lambda c: c[1].U)
        if not forced and cur is None:
            cur = evaluate(labels)
        if forced or best_eval.U >= cur.U:
            records.append(note(v, labels, best_labels, "repaired"))
            labels, cur = best_labels, best_eval
            if touched is not None:
                touched = touched | set(v.members)
        else:
            records.append(note(v, labels, labels, "kept"))
            skipped.add(v)
    if cur is None:  # nothing could be repaired (clamped members)
        cur = evaluate(labels)
    return labels, cur, records
