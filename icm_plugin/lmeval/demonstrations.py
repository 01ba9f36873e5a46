"""Which labels the many-shot demonstrations carry: ICM's (a run's labels.jsonl), the gold ones, or none.

The demonstrations are drawn from the pool side of ``split_pool`` only, so a demonstration never shares a
consistency group with a test example; a labels file that labels any test example is refused, because then the
labels themselves were fitted with the test set in the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icm_plugin.errors import ICMError
from icm_plugin.examples import Example
from icm_plugin.loaders import read_label_file

GOLD = "gold"


def labels_for_task(labels: Any, task: str) -> str | None:
    """The labels source for one task from the ``labels`` metadata: a string, or a dict keyed by task name.

    A dict lets one ``--tasks icm`` run give each task its own run folder: ``{"icm_facts": "runs/facts"}``
    (``facts`` works as a key too); tasks missing from it get no labels (zero-shot only).
    """
    if labels is None or isinstance(labels, str):
        return labels or None
    if isinstance(labels, dict):
        value = labels.get(f"icm_{task}", labels.get(task))
        return None if value is None else str(value)
    raise ICMError(f"metadata 'labels' must be a path, \"gold\" or a dict of task -> path, got {type(labels).__name__}")


def read_labels_file(source: str | Path) -> dict[str, int]:
    """``{id: label}`` from an ``icm label`` run: its ``labels.jsonl``, or the run folder holding it.

    Raises ICMError naming the file and line for a missing file, bad JSON, a missing id or a bad label.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        path = path / "labels.jsonl"
    if not path.is_file():
        raise ICMError(f"labels {str(source)!r}: no such file; give RUN_DIR/labels.jsonl from `icm label`, or \"gold\"")
    labels = read_label_file(path)  # the core's one reader of labels/clamp/pull files
    if not labels:
        raise ICMError(f"{path}: no labels in the file")
    return labels


def demonstration_labels(labels: str | None, pool: Sequence[Example], test: Sequence[Example]) -> dict[str, int]:
    """``{pool id: label}`` for the demonstrations: empty for no source, gold labels, or a labels file's.

    A labels file may cover part of the pool (a ``--limit`` run). Raises ICMError when it labels any test
    example (a leak) or none of the pool (a run on other data).
    """
    if labels is None:
        return {}
    if labels == GOLD:
        missing = [e.id for e in pool if e.label is None]
        if missing:
            raise ICMError(f"labels \"gold\": {len(missing)} pool examples have no gold label (e.g. id {missing[0]!r})")
        return {e.id: int(e.label) for e in pool}
    given = read_labels_file(labels)
    leaked = [e.id for e in test if e.id in given]
    if leaked:
        raise ICMError(
            f"labels {labels!r} label {len(leaked)} examples of the held-out test split (e.g. id {leaked[0]!r}): "
            "that run saw the test set. Label the pool only: `icm label --split pool ...` "
            "(or `python -m icm_plugin.lmeval pool` to write the pool file for `icm label --data`)"
        )
    chosen = {e.id: given[e.id] for e in pool if e.id in given}
    if not chosen:
        raise ICMError(
            f"labels {labels!r}: none of its {len(given)} ids is in this task's pool ({len(pool)} examples); "
            "was the run made on another task or data set?"
        )
    return chosen
