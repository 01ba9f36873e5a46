"""Any Argilla single-label question (issue 20): a dataset of the most common shape (a TextField, a 4-label
LabelQuestion, records without responses) is labelled by `icm label --argilla-dataset NAME --question Q` with no
--task, and every record gets a suggestion with one of the question's labels and a score in [0, 1]; a k-label
run pushes as a k-label question; a question that is not single-label is one clear error."""

from __future__ import annotations

import json

import argilla as rg
import pytest

from icm_plugin.integrations.argilla.client import find_dataset

pytestmark = pytest.mark.argilla

LABELS = ["sports", "food", "weather", "music"]
TEXTS = [
    ("t1", "The striker scored twice and the home team won the cup."),
    ("t2", "Slice the onions thinly and fry them in butter until golden."),
    ("t3", "Heavy rain and strong winds are expected along the coast tonight."),
    ("t4", "The orchestra played Beethoven's ninth symphony to a full hall."),
    ("t5", "She finished the marathon in under three hours."),
    ("t6", "This bakery sells the best sourdough bread in town."),
    ("t7", "Tomorrow will be sunny with a high of twenty-eight degrees."),
    ("t8", "The band's new album mixes jazz chords with electronic beats."),
]


def _topics_dataset(client, name: str) -> rg.Dataset:
    ds = rg.Dataset(name=name, workspace="argilla", client=client, settings=rg.Settings(
        fields=[rg.TextField(name="text", title="Text", client=client)],
        questions=[rg.LabelQuestion(name="topic", title="Topic", labels=LABELS, client=client),
                   rg.MultiLabelQuestion(name="tags", labels=["a", "b"], required=False, client=client)]))
    ds.create()
    ds.records.log([rg.Record(id=i, fields={"text": t}) for i, t in TEXTS])
    return ds


def test_a_four_label_argilla_dataset_is_labelled_without_a_task(client, dataset_name, server_args, tmp_path,
                                                                 tiny_model_dir, icm_cli):
    _topics_dataset(client, dataset_name)
    out = tmp_path / "run"
    done = icm_cli("label", "--argilla-dataset", dataset_name, "--question", "topic", "--model", str(tiny_model_dir),
                   "--dtype", "float32", "--iterations", "12", "--out", str(out), *server_args)
    assert done.returncode == 0, done.stderr[-3000:]
    records = list(find_dataset(client, dataset_name, "argilla").records(with_suggestions=True, with_responses=True))
    assert len(records) == len(TEXTS)
    for record in records:
        s = record.suggestions["topic"]
        assert s is not None and s.value in LABELS and 0.0 <= s.score <= 1.0
        assert not record.responses["topic"]  # nothing answered for the reviewer
    rows = {r["id"]: r for r in map(json.loads, (out / "labels.jsonl").read_text().splitlines())}
    by_id = {r.id: r for r in records}
    for rid, row in rows.items():  # the suggestion is the label ICM chose, scored by its probability
        assert by_id[rid].suggestions["topic"].value == row["value"] == LABELS[row["label"]]
        assert by_id[rid].suggestions["topic"].score == pytest.approx(row["confidence"], abs=1e-4)
    # the prompt the dataset's settings made, kept in the run folder as a task file
    task = (out / "task.yaml").read_text()
    assert "Text: {{text}}" in task and "Topic" in task and all(label in task for label in LABELS)

    # a k-label run pushes as a k-label question
    pushed = icm_cli("push", str(out), "--dataset", dataset_name + "-review", *server_args)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    review = find_dataset(client, dataset_name + "-review", "argilla")
    question = next(q for q in review.settings.questions if q.name == "label")
    assert list(question.labels) == LABELS
    values = {r.id: r.suggestions["label"].value for r in review.records(with_suggestions=True)}
    assert values == {rid: row["value"] for rid, row in rows.items()}


def test_a_question_that_is_not_single_label_is_one_clear_error(client, dataset_name, server_args, tmp_path,
                                                                tiny_model_dir, icm_cli):
    _topics_dataset(client, dataset_name)
    out = tmp_path / "run"
    done = icm_cli("label", "--argilla-dataset", dataset_name, "--question", "tags", "--model", str(tiny_model_dir),
                   "--out", str(out), *server_args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "'tags'" in done.stderr and "MultiLabelQuestion" in done.stderr and "single-label" in done.stderr
    assert not out.exists()
