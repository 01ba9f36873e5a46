"""What `icm label` writes of its reliability verdict, for Argilla tests that build a run folder by hand."""

from __future__ import annotations

from icm_plugin.method.reliability import report_reliability, verdict

FLAGGED = {"agreement": 0.5, "margin": 0.2}  # both past their thresholds
PASSED = {"agreement": 0.9, "margin": 2.0}


def mark_verdict(rows: list[dict], against: dict[str, int], agreement: float, margin: float) -> dict:
    """Marks each labels.jsonl row in place (``against_model``; ``model_prefers`` where the model prefers another
    label) and returns report.json's ``reliability`` for these signals, judged by the real
    ``reliability.verdict``, so its flag and reasons follow today's thresholds."""
    for row in rows:
        row["against_model"] = row["id"] in against
        if row["id"] in against:
            row["model_prefers"] = against[row["id"]]
    signals = {"agreement_zero_shot_rule": agreement, "margin": margin, "against_model": len(against) / len(rows),
               "majority_share": 0.5}
    return report_reliability(verdict(signals) | {"records": dict.fromkeys(against)})
