"""`icm pull`: submitted human answers from Argilla as ICM labels (the clamp file of `icm label --clamp`).

Only responses with status ``submitted`` count: drafts are unfinished and discarded records were skipped on
purpose. When several people answered one record, the majority wins; a tie leaves the record out. A review
dataset is read together with its ``NAME-conflicts`` companion (one clamp file: all answers per example pooled,
the majority wins, and examples the two datasets answer differently are reported).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import argilla as rg
from argilla.responses import ResponseStatus

from icm_plugin.core.writers import write_jsonl
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.client import argilla_errors, find_dataset, workspace_name
from icm_plugin.integrations.argilla.schema import (
    CONFLICT_SUFFIX,
    OTHERS_QUESTION,
    QUESTION,
    is_conflict_dataset,
)

TRUE_WORDS = {"true", "yes", "correct", "right", "good", "1", "positive", "entailment"}
FALSE_WORDS = {"false", "no", "incorrect", "wrong", "bad", "0", "negative", "contradiction"}


def label_map(question: rg.LabelQuestion, dataset: str, true_label: str | None = None) -> dict[str, int]:
    """Argilla label value -> ICM label: for two labels 1 = the claim holds (the True/False words or
    ``true_label``); for more, the label's position in the question. Raises ICMError if it cannot be told."""
    labels = list(question.labels)
    if len(labels) > 2:
        return {str(v): i for i, v in enumerate(labels)}
    if len(labels) != 2:
        raise ICMError(f"question {question.name!r} of dataset {dataset!r} has {len(labels)} label(s) {labels}; "
                       "ICM needs a LabelQuestion with at least two labels")
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
    if not isinstance(q, rg.LabelQuestion) or isinstance(q, rg.MultiLabelQuestion):  # multi-label subclasses it
        raise ICMError(f"question {name!r} of dataset {dataset.name!r} is a {type(q).__name__}; ICM labels "
                       "single-label questions: a LabelQuestion with two or more labels (not a multi-label, rating, "
                       "ranking, span or text question)")
    return q


def _submitted(record: rg.Record, question: str) -> list[str]:
    return [str(r.value) for r in (record.responses[question] or []) if r.status == ResponseStatus.submitted]


def _majority(values: list[int]) -> int | None:
    counts = Counter(values).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


@dataclass(frozen=True)
class PullResult:
    """What `icm pull` read: ``rows`` ({"id", "label"}, the majority of all submitted answers per example),
    ``ties`` (examples left out: answers split evenly), ``answers`` (submitted answers read, per dataset) and
    ``disagreements`` (examples whose majority differs between the datasets read)."""

    rows: list[dict]
    ties: int
    answers: dict[str, int]
    disagreements: list[str]


def pull_labels(client: rg.Argilla, name: str, workspace: str | None = None, question: str | None = None,
                true_label: str | None = None) -> PullResult:
    """Submitted answers of dataset ``name`` as ICM labels; for a review dataset, its ``NAME-conflicts``
    companion's answers too (when it exists and no ``question`` is named), so one clamp file holds both.
    Raises ICMError (unknown dataset or question, a malformed "Other examples" answer)."""
    with argilla_errors(client.api_url, f"reading dataset {name!r}"):
        ws = workspace_name(client, workspace)
        ds = find_dataset(client, name, ws)
        if ds is None:
            names = [d.name for d in client.workspaces(name=ws).datasets]
            raise ICMError(f"no dataset {name!r} in workspace {ws!r} (it has: {', '.join(names) or 'none'})")
        votes: dict[str, dict[str, list[int]]] = {}
        if question is None and is_conflict_dataset(ds.settings):
            votes[name] = _conflict_votes(ds, true_label)
        else:
            votes[name] = _review_votes(ds, question or QUESTION, true_label)
            companion = find_dataset(client, name + CONFLICT_SUFFIX, ws) if question is None else None
            if companion is not None and is_conflict_dataset(companion.settings):
                votes[companion.name] = _conflict_votes(companion, true_label)
    return _combine(votes)


def _review_votes(ds: rg.Dataset, question: str, true_label: str | None) -> dict[str, list[int]]:
    q = label_question(ds, question)
    mapping = label_map(q, ds.name, true_label)
    votes: dict[str, list[int]] = {}
    for record in ds.records(with_responses=True, batch_size=500):
        answers = [mapping[v] for v in _submitted(record, q.name) if v in mapping]
        if answers:
            votes[record.id if record.id is not None else str(record._server_id)] = answers
    return votes


def _conflict_votes(ds: rg.Dataset, true_label: str | None) -> dict[str, list[int]]:
    """Per-example answers of a NAME-conflicts dataset: label_1/label_2 for the ids in its metadata, and the
    "Other examples" box (one ``id: label`` per line) for the rest of the group."""
    mapping = label_map(label_question(ds, "label_1"), ds.name, true_label)
    by_word = {v.strip().lower(): y for v, y in mapping.items()}
    has_box = OTHERS_QUESTION in {q.name for q in ds.settings.questions}
    votes: dict[str, list[int]] = {}
    for record in ds.records(with_responses=True, batch_size=500):
        for n in (1, 2):
            ex_id = record.metadata.get(f"example_{n}_id")
            for v in _submitted(record, f"label_{n}"):
                if ex_id is not None and v in mapping:
                    votes.setdefault(str(ex_id), []).append(mapping[v])
        others = other_ids(str(record.fields.get("others") or ""))
        for text in _submitted(record, OTHERS_QUESTION) if has_box else []:
            for ex_id, label in parse_other_answers(text, others, by_word, f"dataset {ds.name!r}, record {record.id}"):
                votes.setdefault(ex_id, []).append(label)
    return votes


def other_ids(field_text: str) -> list[str]:
    """The example ids in a conflicts record's "Other examples" field (its ``id: ...`` lines)."""
    return [html.unescape(m.group(1).strip()) for m in re.finditer(r"^id: (.+)$", field_text, flags=re.M)]


def parse_other_answers(text: str, ids: list[str], by_word: dict[str, int], where: str) -> list[tuple[str, int]]:
    """``id: label`` lines typed in the "Other examples" box -> [(id, 0/1)]. Blank lines are skipped.

    Raises ICMError naming the record and line for a line that is not ``id: label``, an id not shown in that
    record, or a label that is not one of the question's labels.
    """
    words = "/".join(sorted(by_word, key=lambda w: -by_word[w]))
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        ex_id, sep, value = line.rpartition(":")
        ex_id, value = ex_id.strip(), value.strip().lower()
        if not sep or not ex_id:
            raise ICMError(f"{where}: \"Other examples\" answer line {n} {line.strip()!r} is not `id: label`; "
                           f"write one `id: {words}` per line")
        if ex_id not in ids:
            raise ICMError(f"{where}: \"Other examples\" answer line {n} names id {ex_id!r}, which that record "
                           f"does not show (its other examples: {', '.join(ids) or 'none'})")
        if value not in by_word:
            raise ICMError(f"{where}: \"Other examples\" answer line {n} gives {ex_id!r} the label {value!r}; "
                           f"use one of {words}")
        out.append((ex_id, by_word[value]))
    return out


def _combine(votes: dict[str, dict[str, list[int]]]) -> PullResult:
    rows, ties = [], 0
    pooled: dict[str, list[int]] = {}
    for per_dataset in votes.values():
        for ex_id, answers in per_dataset.items():
            pooled.setdefault(ex_id, []).extend(answers)
    for ex_id, answers in pooled.items():
        label = _majority(answers)
        if label is None:
            ties += 1
        else:
            rows.append({"id": ex_id, "label": label})
    disagreements = []
    if len(votes) > 1:
        for ex_id in pooled:
            majorities = {_majority(v[ex_id]) for v in votes.values() if ex_id in v}
            majorities.discard(None)
            if len(majorities) > 1:
                disagreements.append(ex_id)
    return PullResult(rows, ties, {name: sum(map(len, v.values())) for name, v in votes.items()}, disagreements)


def write_labels_file(rows: list[dict], out: str | Path) -> Path:
    """Write the clamp file atomically (a temporary file renamed into place)."""
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    return path
