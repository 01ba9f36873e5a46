"""Push, re-push, interrupted push, conflicts, pull and errors against the real local Argilla stack."""

from __future__ import annotations

import json

import argilla as rg
import pytest

from icm_plugin.cli.main import main
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.client import find_dataset
from icm_plugin.integrations.argilla.review import push_run

pytestmark = pytest.mark.argilla

QUIET = {"echo": lambda _msg: None}


def _records(client, name, **kw) -> dict[str, rg.Record]:
    ds = find_dataset(client, name, "argilla")
    assert ds is not None, f"dataset {name} missing"
    return {r.id: r for r in ds.records(batch_size=500, **kw)}


def _answer(client, name: str, ex_id: str, value: str, status: str, question: str = "label") -> None:
    """Answer one record as the signed-in user, as the UI would store it."""
    ds = find_dataset(client, name, "argilla")
    record = next(r for r in ds.records(batch_size=500) if r.id == ex_id)
    record.responses.add(rg.Response(question_name=question, value=value, user_id=client.me.id, status=status))
    ds.records.log([record])


def test_push_creates_review_dataset_with_scored_suggestions(client, run_dir, dataset_name, server_args, capsys):
    assert main(["push", str(run_dir), "--dataset", dataset_name, *server_args]) == 0
    assert f"pushed 6 records to {dataset_name!r}" in capsys.readouterr().out
    ds = find_dataset(client, dataset_name, "argilla")
    assert [f.name for f in ds.settings.fields] == ["question", "claim"]
    assert all(f.use_markdown is False for f in ds.settings.fields)
    (question,) = ds.settings.questions
    assert question.name == "label" and set(question.labels) == {"True", "False"}
    assert {m.name for m in ds.settings.metadata} >= {"consistency_group", "confidence", "in_flagged_pair"}
    assert "Internal Coherence Maximization" in ds.settings.guidelines
    records = _records(client, dataset_name, with_suggestions=True)
    assert sorted(records) == sorted(e.id for e in RunFolder.read(run_dir).examples)
    s = records["q1-0"].suggestions["label"]
    assert (s.value, s.score, s.agent) == ("True", 0.91, "icm/tiny-model")
    assert records["q2-3"].metadata["in_flagged_pair"] == "yes"
    assert records["q3-5"].fields["claim"] == "&lt;b&gt;Mercury&lt;/b&gt; **bold?**"
    # metadata filters work on the server (through the search engine)
    flagged = ds.records(query=rg.Query(filter=rg.Filter(("metadata.in_flagged_pair", "==", "yes"))))
    assert sorted(r.id for r in flagged) == ["q2-2", "q2-3", "q3-4", "q3-5"]


def test_conflicts_dataset_shows_flagged_pairs_side_by_side(client, run_dir, dataset_name):
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    conflicts = list(find_dataset(client, dataset_name + "-conflicts", "argilla").records(with_suggestions=True))
    assert len(conflicts) == 2  # the spider pair was flagged twice: one record
    spider = next(r for r in conflicts if r.metadata["example_1_id"] == "q2-2")
    assert spider.metadata["times_flagged"] == 2 and spider.metadata["resolution"] == "unresolved"
    assert "Claim: Six" in spider.fields["example_1"] and "Claim: Eight" in spider.fields["example_2"]
    assert spider.suggestions["label_1"].value == "True" and spider.suggestions["label_2"].agent == "icm/tiny-model"


def test_repush_updates_in_place_no_duplicates_answers_kept(client, tmp_path, make_run, dataset_name):
    first = make_run(tmp_path / "first")
    push_run(client, RunFolder.read(first), dataset_name, **QUIET)
    _answer(client, dataset_name, "q2-3", "True", "submitted")
    second = make_run(tmp_path / "second")
    labels = [json.loads(line) for line in (second / "labels.jsonl").read_text().splitlines()]
    for row in labels:
        row["label"], row["confidence"] = 1 - row["label"], 0.7
    (second / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    result = push_run(client, RunFolder.read(second), dataset_name, **QUIET)
    assert (result.records, result.stale) == (6, 0)
    records = _records(client, dataset_name, with_suggestions=True, with_responses=True)
    assert len(records) == 6
    assert records["q1-0"].suggestions["label"].value == "False"
    assert records["q1-0"].suggestions["label"].score == 0.7
    assert [r.value for r in records["q2-3"].responses["label"]] == ["True"]  # the human answer survived
    assert len(list(find_dataset(client, dataset_name + "-conflicts", "argilla").records)) == 2


def test_interrupted_push_rerun_ends_with_one_record_per_example(client, run_dir, dataset_name, monkeypatch):
    import icm_plugin.integrations.argilla.review as push_module

    monkeypatch.setattr(push_module, "BATCH_SIZE", 2)
    real = client.api.records.bulk_upsert
    sent = []

    def dies_on_second_batch(dataset_id, records):
        if len(sent) == 1:
            raise KeyboardInterrupt  # the user pressed Ctrl-C (or the process died) mid-push
        sent.append(len(records))
        return real(dataset_id, records)

    monkeypatch.setattr(client.api.records, "bulk_upsert", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    assert len(_records(client, dataset_name)) == 2
    monkeypatch.setattr(client.api.records, "bulk_upsert", real)
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    records = _records(client, dataset_name)
    assert sorted(records) == sorted(e.id for e in RunFolder.read(run_dir).examples)


def test_push_that_died_while_creating_the_dataset_is_redone(client, run_dir, dataset_name):
    from argilla._resource import Resource

    draft = rg.Dataset(name=dataset_name, workspace="argilla", client=client, settings=rg.Settings(
        fields=[rg.TextField(name="question", client=client)],
        questions=[rg.LabelQuestion(name="label", labels=["True", "False"], client=client)]))
    Resource.create(draft)  # the first step of Dataset.create: a draft without fields, never published
    assert find_dataset(client, dataset_name, "argilla")._model.status == "draft"
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    assert len(_records(client, dataset_name)) == 6


def test_pull_returns_submitted_answers_only(client, run_dir, dataset_name, tmp_path, server_args, capsys):
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    _answer(client, dataset_name, "q1-1", "True", "submitted")
    _answer(client, dataset_name, "q2-2", "False", "submitted")
    _answer(client, dataset_name, "q2-3", "True", "draft")
    _answer(client, dataset_name, "q3-4", "True", "discarded")
    out = tmp_path / "human.jsonl"
    assert main(["pull", "--dataset", dataset_name, "--out", str(out), *server_args]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(rows, key=lambda r: r["id"]) == [{"id": "q1-1", "label": 1}, {"id": "q2-2", "label": 0}]
    assert "2 submitted label(s)" in capsys.readouterr().out


def test_pull_reads_answers_given_in_the_conflicts_dataset(client, run_dir, dataset_name, tmp_path, server_args):
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    ds = find_dataset(client, dataset_name + "-conflicts", "argilla")
    record = next(r for r in ds.records if r.metadata["example_1_id"] == "q2-2")
    record.responses.add(rg.Response("label_1", "False", user_id=client.me.id, status="submitted"))
    record.responses.add(rg.Response("label_2", "True", user_id=client.me.id, status="submitted"))
    ds.records.log([record])
    out = tmp_path / "conflicts.jsonl"
    assert main(["pull", "--dataset", dataset_name + "-conflicts", "--out", str(out), *server_args]) == 0
    rows = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["id"])
    assert rows == [{"id": "q2-2", "label": 0}, {"id": "q2-3", "label": 1}]


# ---- errors: one clear message each, nothing half-written ----------------------------------------

def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_unreachable_server(run_dir, capsys, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    err = _error(capsys, ["push", str(run_dir), "--dataset", "x", "--api-url", f"http://127.0.0.1:{port}",
                          "--api-key", "k"])
    assert f"cannot reach Argilla at http://127.0.0.1:{port}" in err


def test_wrong_api_key(run_dir, capsys, argilla_stack):
    stack, _ = argilla_stack
    err = _error(capsys, ["push", str(run_dir), "--dataset", "x", "--api-url", stack.status().url,
                          "--api-key", "not-the-key"])
    assert "rejected the API key" in err


def test_missing_workspace(run_dir, capsys, server_args, client, dataset_name):
    err = _error(capsys, ["push", str(run_dir), "--dataset", dataset_name, "--workspace", "nope", *server_args])
    assert "workspace 'nope' does not exist" in err and "argilla" in err
    assert find_dataset(client, dataset_name, "argilla") is None


def test_dataset_whose_schema_does_not_fit_is_left_alone(client, run_dir, dataset_name, capsys, server_args):
    other = rg.Dataset(name=dataset_name, workspace="argilla", client=client, settings=rg.Settings(
        fields=[rg.TextField(name="text", client=client)],
        questions=[rg.LabelQuestion(name="sentiment", labels=["pos", "neg"], client=client)]))
    other.create()
    other.records.log([rg.Record(id="keep-me", fields={"text": "hello"})])
    err = _error(capsys, ["push", str(run_dir), "--dataset", dataset_name, *server_args])
    assert f"dataset {dataset_name!r}" in err and "does not fit" in err and "no field 'question'" in err
    assert list(_records(client, dataset_name)) == ["keep-me"]
    assert find_dataset(client, dataset_name + "-conflicts", "argilla") is None


def test_unknown_question_name_on_pull(client, run_dir, dataset_name, capsys, server_args, tmp_path):
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    out = tmp_path / "out.jsonl"
    err = _error(capsys, ["pull", "--dataset", dataset_name, "--question", "verdict", "--out", str(out), *server_args])
    assert "has no question 'verdict'" in err and "label" in err
    assert not out.exists()
    err = _error(capsys, ["pull", "--dataset", dataset_name + "-nope", "--out", str(out), *server_args])
    assert f"no dataset '{dataset_name}-nope'" in err


def test_push_error_is_an_icm_error_for_library_users(client, run_dir):
    with pytest.raises(ICMError, match="workspace 'nope'"):
        push_run(client, RunFolder.read(run_dir), "whatever", workspace="nope", **QUIET)
