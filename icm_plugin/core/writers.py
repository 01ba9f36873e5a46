"""Sinks for a finished search: the run folder (labels, conflicts, report, plot) and datasets.Dataset.

Writers never call the model. Files are written to a temporary name and renamed, so a crash never leaves
a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.metrics import collapsed, gold_report, label_balance, slot_table
from icm_plugin.errors import ICMError


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj``: a NaN or infinite float becomes null (bare NaN is not JSON)."""
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=False, allow_nan=False)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[Path]:
    """Yield the temporary name to write ``path`` under, then rename it into place.

    A failed write (full disk, read-only folder) removes the temporary file, keeps whatever ``path`` held
    and raises one ICMError naming the file.
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ICMError(f"{path}: cannot write ({err.strerror}); free disk space or make the folder writable, "
                       "then run the command again (`icm label`: with --resume)") from None


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with writing(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json_text(row) + "\n")


def write_json(path: Path, obj: Any) -> None:
    with writing(path) as tmp:
        tmp.write_text(json_text(obj, indent=2) + "\n", encoding="utf-8")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with Path(path).open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ICMError(f"{path}: line {lineno}: not UTF-8 text (byte {raw[err.start]:#04x}); "
                               "save the file as UTF-8") from None
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ICMError(f"{path}: line {lineno}: not valid JSON ({err.msg})") from None
    return rows


def write_examples(out: Path, examples: Sequence[Example]) -> None:
    write_jsonl(out / "examples.jsonl", (e.to_dict() for e in examples))


def write_labels(out: Path, examples: Sequence[Example], labels: Sequence[int], confidence: Sequence[float],
                 choices: Sequence[str] | None = None, against: dict[str, dict[str, Any]] | None = None) -> None:
    """labels.jsonl: ``id``, ``label`` (the label's index), ``value`` (the label itself, with ``choices``),
    ``confidence``, ``against_model`` (with ``against``, ``icm_plugin.method.reliability``'s records: true when the model
    itself finds another label more likely given the final demonstrations; then ``model_prefers``, that label's
    index) and ``gold`` where known."""
    rows = []
    for ex, y, c in zip(examples, labels, confidence, strict=True):
        row: dict[str, Any] = {"id": ex.id, "label": int(y)}
        if choices is not None:
            row["value"] = choices[int(y)]
        row["confidence"] = round(float(c), 6)
        if against is not None:
            row["against_model"] = ex.id in against
            if ex.id in against:
                row["model_prefers"] = int(against[ex.id]["best"])
        if ex.label is not None:
            row["gold"] = ex.label
        rows.append(row)
    write_jsonl(out / "labels.jsonl", rows)


def build_report(out: Path, examples: Sequence[Example], base: dict[str, Any],
                 choices: Sequence[str] | None = None) -> dict[str, Any]:
    """report.json: search figures plus metrics computed from labels.jsonl as written."""
    rows = {r["id"]: r for r in read_jsonl(out / "labels.jsonl")}
    pred = [int(rows[e.id]["label"]) for e in examples]
    report = dict(base)
    report.update(gold_report(examples, pred))
    report["label_balance"] = label_balance(pred, choices)
    report["collapsed_to_one_class"] = collapsed(pred)
    if choices is None or len(choices) == 2:
        report["true_rate_by_slot"] = slot_table(examples, pred)
    return report


def accuracy_curve(examples: Sequence[Example], history: Sequence[dict[str, Any]]) -> list[float | None]:
    """Accuracy of the labelled part against gold after each step (replaying the accepted changes)."""
    gold = [e.label for e in examples]
    if any(g is None for g in gold):
        return []
    labels: dict[int, int] = {}
    curve: list[float | None] = []
    for h in history:
        for i, y in h.get("changes", {}).items():
            labels[int(i)] = y
        done = [(y, gold[i]) for i, y in labels.items() if y is not None]
        curve.append(sum(a == b for a, b in done) / len(done) if done else None)
    return curve


def plot_progress(out: Path, examples: Sequence[Example], history: Sequence[dict[str, Any]],
                  references: dict[str, float] | None = None) -> Path:
    """progress.png: U, inconsistencies and (with gold) accuracy of the labelled part over the steps, with
    ``references`` (name -> accuracy, e.g. zero-shot) drawn as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = list(range(len(history)))
    acc = accuracy_curve(examples, history)
    rows = 3 if acc else 2
    fig, axes = plt.subplots(rows, 1, figsize=(7, 2.2 * rows), sharex=True)
    axes[0].plot(steps, [h["U"] for h in history], color="tab:blue")
    axes[0].set_ylabel("U")
    axes[1].plot(steps, [h["I"] for h in history], color="tab:red")
    axes[1].set_ylabel("inconsistencies")
    if acc:
        axes[2].plot(steps, [a if a is not None else float("nan") for a in acc], color="tab:green", label="ICM")
        for (name, value), style in zip((references or {}).items(), ("--", ":"), strict=False):
            axes[2].axhline(value, color="tab:gray", linestyle=style, label=f"{name} ({value:.2f})")
        if references:
            axes[2].legend(loc="lower right", fontsize="small")
        axes[2].set_ylabel("accuracy (labelled)")
        axes[2].set_ylim(0, 1)
    axes[-1].set_xlabel("search step")
    fig.suptitle("ICM search")
    fig.tight_layout()
    path = out / "progress.png"
    try:
        with writing(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def labels_to_dataset(run_dir: str | Path):
    """A datasets.Dataset of the run's examples with ICM's label and confidence (gold kept as ``gold``)."""
    import datasets

    run = Path(run_dir)
    for name in ("examples.jsonl", "labels.jsonl"):
        if not (run / name).exists():
            raise ICMError(f"{run / name} not found: is {run} a finished `icm label` run folder?")
    labels = {r["id"]: r for r in read_jsonl(run / "labels.jsonl")}
    rows = []
    for ex in read_jsonl(run / "examples.jsonl"):
        lab = labels.get(ex["id"])
        if lab is None:
            raise ICMError(f"{run / 'labels.jsonl'}: no label for example id {ex['id']!r}")
        row = {k: ex.get(k) for k in ("id", "question", "choice", "choice_2", "consistency_id", "consistency_key")}
        row.update({k: v for k, v in (ex.get("fields") or {}).items() if k not in row})
        row["consistency_id"] = None if row["consistency_id"] is None else str(row["consistency_id"])
        row.update(label=int(lab["label"]), confidence=float(lab["confidence"]), gold=ex.get("label"))
        if "value" in lab:
            row["value"] = lab["value"]
        rows.append(row)
    return datasets.Dataset.from_list(rows)
