"""Which labels the many-shot demonstrations carry: ICM's (a run's labels.jsonl), the gold ones, or none.

Sources: ``RUN_DIR`` or ``RUN_DIR/labels.jsonl`` (ICM's labels of the pool examples that run labelled), ``"gold"``
(gold labels of the whole pool) and ``"gold:RUN_DIR"`` (gold labels of exactly the examples that run labelled: the
like-for-like baseline for it, since the demonstrations are then drawn from the same examples and only the labels
differ). The demonstrations are drawn from the pool side of ``split_pool`` only, so a demonstration never shares a
consistency group with a test example; a labels file that labels any test example is refused, because then the
labels themselves were fitted with the test set in the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.loaders import read_label_file
from icm_plugin.errors import ICMError

GOLD = "gold"
GOLD_OF_RUN = "gold:"  # + RUN_DIR: gold labels of the examples that run labelled


def labels_for_task(labels: Any, task: str, tasks: Sequence[str] = ()) -> str | None:
    """The labels source for one task from the ``labels`` metadata: a string, or a dict keyed by task name.

    A dict lets one ``--tasks icm`` run give each task its own source: ``{"icm_facts": "runs/facts",
    "icm_truthfulqa": "gold"}`` (``facts`` works as a key too). It must name every task the run builds: lm-eval's
    ``--num_fewshot`` is one number for the whole run, so a task left out could have no demonstrations. Raises
    ICMError naming the tasks of ``tasks`` (the group's) that the dict leaves out, or a key that names no task.
    """
    if labels is None or isinstance(labels, str):
        return labels or None
    if not isinstance(labels, dict):
        raise ICMError(f"metadata 'labels' must be a path, \"gold\", \"gold:RUN_DIR\" or a dict of task -> one of "
                       f"those, got {type(labels).__name__}")
    known = {name for t in tasks for name in (t, f"icm_{t}")}
    unknown = [k for k in labels if known and k not in known]
    if unknown:
        raise ICMError(f"metadata 'labels': {unknown[0]!r} is not a task; the keys are task names: "
                       f"{', '.join(f'icm_{t}' for t in tasks)}")
    value = labels.get(f"icm_{task}", labels.get(task))
    if value is None:
        left_out = [f"icm_{t}" for t in tasks if labels.get(f"icm_{t}", labels.get(t)) is None] or [f"icm_{task}"]
        raise ICMError(
            f"icm_{task}: metadata 'labels' is a dict without an entry for this task (of the icm tasks it leaves "
            f"out {', '.join(left_out)}; it names {', '.join(map(str, labels)) or 'none'}). --num_fewshot is one number for the "
            f"whole run, so give every task a source (e.g. \"icm_{task}\": \"gold\"), or run the tasks left out "
            "on their own with --num_fewshot 0")
    return str(value)


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
    """``{pool id: label}`` for the demonstrations: empty for no source, gold labels (of the whole pool, or with
    ``gold:RUN_DIR`` of the examples that run labelled), or a labels file's.

    A labels file may cover part of the pool (a ``--limit`` run). Raises ICMError when it labels any test
    example (a leak) or none of the pool (a run on other data), and for a pool example without a gold label.
    """
    if labels is None:
        return {}
    if labels == GOLD:
        return _gold(labels, pool)
    if labels.startswith(GOLD_OF_RUN):
        run = labels[len(GOLD_OF_RUN):]
        if not run:
            raise ICMError('labels "gold:": name the run folder after the colon, e.g. "gold:runs/facts-pool"')
        chosen = run_labels(run, pool, test)
        return _gold(labels, [e for e in pool if e.id in chosen])
    return run_labels(labels, pool, test)


def _gold(source: str, examples: Sequence[Example]) -> dict[str, int]:
    missing = [e.id for e in examples if e.label is None]
    if missing:
        raise ICMError(f"labels {source!r}: {len(missing)} pool examples have no gold label (e.g. id {missing[0]!r})")
    return {e.id: int(e.label) for e in examples}


def run_labels(labels: str | Path, pool: Sequence[Example], test: Sequence[Example]) -> dict[str, int]:
    """``{pool id: label}`` from an ``icm label`` run (its folder or labels.jsonl), the pool examples it labelled.

    Raises ICMError when the run labels any test example (a leak) or none of the pool (a run on other data).
    """
    labels = str(labels)
    given = read_labels_file(labels)
    leaked = [e.id for e in test if e.id in given]
    if leaked:
        raise ICMError(
            f"labels {labels!r} label {len(leaked)} examples of the held-out test split (e.g. id {leaked[0]!r}): "
            "that run saw the test set. Label the pool only: `icm label --split pool ...` "
            "(or `python -m icm_plugin.integrations.lmeval pool` to write the pool file for `icm label --data`)"
        )
    chosen = {e.id: given[e.id] for e in pool if e.id in given}
    if not chosen:
        raise ICMError(
            f"labels {labels!r}: none of its {len(given)} ids is in this task's pool ({len(pool)} examples); "
            "was the run made on another task or data set?"
        )
    return chosen
