"""Read the run folder `icm label` writes (examples, labels, conflicts, report, config), checked as a whole.

``icm_plugin.label`` returns one; ``icm_plugin.integrations.argilla.push`` takes one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import TASK_FILE, Task, get_task, load_task_file
from icm_plugin.core.writers import read_jsonl
from icm_plugin.errors import ICMError


@dataclass(frozen=True)
class RunFolder:
    """A finished ICM run: the pool, its labels (label indices of ``task.choices``) and confidences, and the
    groups flagged by the rule.

    ``against_model``: the ids whose labels.jsonl row says ``"against_model": true`` (the model itself finds
    another label more likely than ICM's, given the final demonstrations: the rule chose ICM's label), each
    with that label's index (``model_prefers``; None when the row does not say). ``model_checked``: the ids
    whose row carries ``against_model`` at all; runs written before ``icm_plugin.method.reliability`` have none, and
    for them "not against the model" is unknown, not false.
    """

    path: Path
    task: Task
    model: str
    rule: str
    examples: list[Example]
    labels: dict[str, int]
    confidence: dict[str, float]
    conflicts: list[dict[str, Any]]
    report: dict[str, Any] = field(default_factory=dict)
    against_model: dict[str, int | None] = field(default_factory=dict)
    model_checked: frozenset[str] = frozenset()

    @property
    def reliability(self) -> dict[str, Any] | None:
        """report.json's ``reliability`` verdict (``icm_plugin.method.reliability``); None for runs from before it."""
        rel = self.report.get("reliability")
        return rel if isinstance(rel, dict) else None

    @property
    def flagged_ids(self) -> set[str]:
        return {str(i) for c in self.conflicts for i in c.get("ids", [])}

    def to_dataset(self):
        """The labels as a ``datasets.Dataset`` (the columns ``icm labels-to-hf`` saves)."""
        from icm_plugin.core.writers import labels_to_dataset

        return labels_to_dataset(self.path)

    @classmethod
    def read(cls, path: str | Path) -> RunFolder:
        """Raises ICMError naming the file when the folder is not a finished run."""
        root = Path(path)
        if not root.is_dir():
            raise ICMError(f"{root}: no such run folder (the --out of `icm label`)")
        for name in ("examples.jsonl", "labels.jsonl"):
            if not (root / name).exists():
                raise ICMError(f"{root / name} not found: {root} is not a finished `icm label` run")
        report = _read_json(root / "report.json")
        config = _read_json(root / "config.json")
        task_name = report.get("task") or config.get("task")
        if not task_name:
            raise ICMError(f"{root}: neither report.json nor config.json names the task")
        # the task file the run wrote (any task); runs from before task files name a built-in task
        task = load_task_file(root / TASK_FILE) if (root / TASK_FILE).is_file() else get_task(task_name)
        model = str(report.get("model") or Path(str(config.get("model") or "unknown")).name)
        rule = str(report.get("rule") or config.get("rule") or task.rule)
        examples = [Example.from_dict(d) for d in read_jsonl(root / "examples.jsonl")]
        labels: dict[str, int] = {}
        confidence: dict[str, float] = {}
        against: dict[str, int | None] = {}
        checked: set[str] = set()
        for n, row in enumerate(read_jsonl(root / "labels.jsonl"), start=1):
            if "id" not in row or row.get("label") not in range(task.k):
                raise ICMError(f"{root / 'labels.jsonl'}: line {n}: needs \"id\" and \"label\" 0 to {task.k - 1} "
                               f"(the index of one of {list(task.choices)})")
            ex_id = str(row["id"])
            labels[ex_id] = int(row["label"])
            confidence[ex_id] = float(row.get("confidence", 0.5))
            if "against_model" in row:  # absent in runs from before icm_plugin.method.reliability
                if not isinstance(row["against_model"], bool):
                    raise ICMError(f"{root / 'labels.jsonl'}: line {n}: \"against_model\" must be true or false, "
                                   f"not {row['against_model']!r}")
                checked.add(ex_id)
                prefers = row.get("model_prefers")
                if prefers is not None and (isinstance(prefers, bool) or prefers not in range(task.k)):
                    raise ICMError(f"{root / 'labels.jsonl'}: line {n}: \"model_prefers\" must be a label index 0 to "
                                   f"{task.k - 1} (one of {list(task.choices)}), not {prefers!r}")
                if row["against_model"]:
                    against[ex_id] = None if prefers is None else int(prefers)
        missing = [e.id for e in examples if e.id not in labels]
        if missing:
            raise ICMError(f"{root / 'labels.jsonl'}: no label for {len(missing)} example(s), e.g. {missing[0]!r}; "
                           "is the run finished?")
        conflicts_path = root / "conflicts.jsonl"
        conflicts = read_jsonl(conflicts_path) if conflicts_path.exists() else []
        return cls(root, task, model, rule, examples, labels, confidence, conflicts, report, against,
                   frozenset(checked))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ICMError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
    return data if isinstance(data, dict) else {}
