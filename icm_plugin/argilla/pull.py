"""`icm pull`: submitted human answers from Argilla as ICM labels (the clamp file of `icm label --clamp`).

Only responses with status ``submitted`` count: drafts are unfinished and discarded records were skipped on
purpose. When several people answered one record, the majority wins; a tie leaves the record out.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import argilla as rg
from argilla.responses import ResponseStatus

from icm_plugin.argilla.client import argilla_errors, find_dataset, workspace_name
from icm_plugin.argilla.schema import QUESTION, is_conflict_dataset
from icm_plugin.errors import ICMError
from icm_plugin.writers import write_jsonl

TRUE_WORDS = {"true", "yes", "correct", "right", "good", "1", "positive", "entailment"}
FALSE_WORDS = {"false", "no", "incorrect", "wrong", "bad", "0", "negative", "contradiction"}


def label_map(question: rg.LabelQuestion, dataset: str, true_label: str | None = None) -> dict[str, int]:
    """Argilla label value -> ICM label (1 = the claim holds). Raises ICMError if it cannot be told."""
    labels = list(question.labels)
    if len(labels) != 2:
        raise ICMError(f"question {question.name!r} of dataset {dataset!r} has {len(labels)} labels {labels}; "
                       "ICM labels True/False, so it needs a question with exactly two labels")
    if true_label is not None:
        if true_label not in labels:
            raise ICMError(f"--true-label {true_label!r} is not a label of question {question.name!r} (labels: {labels})")
        return {v: int(v == true_label) for v in labels}
    trues = [v for v in labels if v.strip().lower() in TRUE_WORDS]
    falses = [v for v in labels if v.strip().lower() in FALSE_WORDS]
    if len(trues) == 1 and len(falses) == 1:
        return {trues[0]: 1, falses[0]: 0}
    raise ICMError(f"cannot tell which label of question {question.name!r} ({labels}) means True; "
                   "pass --true-label VALUE")


def label_question(dataset: rg.Dataset, name: str) -> rg.LabelQuestion:
    """The dataset's LabelQuestion ``name``; ICMError naming the questions it has otherwise."""
    questions = {q.name: q for q in dataset.settings.questions}
    if name not in questions:
        raise ICMError(f"dataset {dataset.name!r} has no question {name!r}; its questions: "
                       f"{', '.join(questions) or 'none'} (pass one with --question)")
    q = questions[name]
    if not isinstance(q, rg.LabelQuestion):
        raise ICMError(f"question {name!r} of dataset {dataset.name!r} is a {type(q).__name__}; "
                       "ICM needs a LabelQuestion with two labels")
    return q


def _submitted(record: rg.Record, question: str) -> list[str]:
    return [str(r.value) for r in (record.responses[question] or []) if r.status == ResponseStatus.submitted]


def _majority(values: list[int]) -> int | None:
    counts = Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def pull_labels(client: rg.Argilla, name: str, workspace: str | None = None, question: str | None = None,
                true_label: str | None = None) -> tuple[list[dict], int]:
    """([{"id", "label"}], number of records left out as ties). Raises ICMError."""
    with argilla_errors(client.api_url, f"reading dataset {name!r}"):
        ws = workspace_name(client, workspace)
        ds = find_dataset(client, name, ws)
        if ds is None:
            names = [d.name for d in client.workspaces(name=ws).datasets]
            raise ICMError(f"no dataset {name!r} in workspace {ws!r} (it has: {', '.join(names) or 'none'})")
        if question is None and is_conflict_dataset(ds.settings):
            return _pull_conflicts(ds, true_label)
        q = label_question(ds, question or QUESTION)
        mapping = label_map(q, name, true_label)
        rows, ties = [], 0
        for record in ds.records(with_responses=True, batch_size=500):
            answers = [mapping[v] for v in _submitted(record, q.name) if v in mapping]
            if not answers:
                continue
            label = _majority(answers)
            if label is None:
                ties += 1
                continue
            rows.append({"id": record.id if record.id is not None else str(record._server_id), "label": label})
    return rows, ties


def _pull_conflicts(ds: rg.Dataset, true_label: str | None) -> tuple[list[dict], int]:
    """Per-example answers of a NAME-conflicts dataset (label_1/label_2 for the ids in its metadata)."""
    mapping = label_map(label_question(ds, "label_1"), ds.name, true_label)
    votes: dict[str, list[int]] = {}
    for record in ds.records(with_responses=True, batch_size=500):
        for n in (1, 2):
            ex_id = record.metadata.get(f"example_{n}_id")
            for v in _submitted(record, f"label_{n}"):
                if ex_id is not None and v in mapping:
                    votes.setdefault(str(ex_id), []).append(mapping[v])
    rows, ties = [], 0
    for ex_id, answers in votes.items():
        label = _majority(answers)
        if label is None:
            ties += 1
        else:
            rows.append({"id": ex_id, "label": label})
    return rows, ties


def write_labels_file(rows: list[dict], out: str | Path) -> Path:
    """Write the clamp file atomically (a temporary file renamed into place)."""
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    return path
