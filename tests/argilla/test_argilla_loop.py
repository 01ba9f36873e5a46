"""The review loop end to end on the real stack: an Argilla dataset as the pool with suggestions written back,
human answers pulled and clamped in a re-run of `icm label` (tiny model), and data surviving down/up."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pytest

from icm_plugin.cli.main import build_parser
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla import cli as argilla_cli
from icm_plugin.integrations.argilla.client import find_dataset

pytestmark = pytest.mark.argilla

SOURCE = [
    # id, prompt, answer, group
    ("r-paris", "What is the capital of France?", "Paris", "g1"),
    ("r-lyon", "What is the capital of France?", "Lyon", "g1"),
    ("r-eight", "How many legs does a spider have?", "Eight", "g2"),
    ("r-six", "How many legs does a spider have?", "Six", "g2"),
]


def _source_dataset(client, name: str) -> rg.Dataset:
    ds = rg.Dataset(name=name, workspace="argilla", client=client, settings=rg.Settings(
        fields=[rg.TextField(name="prompt", client=client), rg.TextField(name="answer", client=client)],
        questions=[rg.LabelQuestion(name="verdict", labels=["yes", "no"], client=client),
                   rg.TextQuestion(name="note", required=False, client=client)],
        metadata=[rg.TermsMetadataProperty(name="group", client=client)]))
    ds.create()
    ds.records.log([rg.Record(id=i, fields={"prompt": p, "answer": a}, metadata={"group": g},
                              suggestions=[rg.Suggestion("note", "from another tool")]) for i, p, a, g in SOURCE])
    record = next(r for r in ds.records if r.id == "r-six")
    record.responses.add(rg.Response("verdict", "no", user_id=client.me.id, status="submitted"))
    ds.records.log([record])
    return ds


def _label_args(*extra: str):
    return build_parser().parse_args(["label", "--task", "facts", *extra])


def _write_run(folder: Path, examples, labels: dict[str, int]) -> Path:
    folder.mkdir(parents=True)
    (folder / "examples.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples))
    (folder / "labels.jsonl").write_text("".join(
        json.dumps({"id": e.id, "label": labels[e.id], "confidence": 0.8}) + "\n" for e in examples))
    (folder / "report.json").write_text(json.dumps({"task": "facts", "model": "tiny-model"}))
    return folder


def test_argilla_dataset_as_pool_with_suggestions_written_back(client, dataset_name, server_args, tmp_path):
    _source_dataset(client, dataset_name)
    args = _label_args("--argilla-dataset", dataset_name, "--question", "verdict",
                       "--field-map", "question=prompt,choice=answer,consistency_id=metadata.group", *server_args)
    examples = argilla_cli.load_pool(args, get_task("facts"))
    assert [(e.id, e.question, e.choice, e.consistency_id) for e in examples] == [
        (i, p, a, g) for i, p, a, g in SOURCE]
    assert all(e.label is None for e in examples)

    run = _write_run(tmp_path / "run", examples, {"r-paris": 1, "r-lyon": 0, "r-eight": 1, "r-six": 0})
    argilla_cli.after_label(args, run)

    records = {r.id: r for r in find_dataset(client, dataset_name, "argilla").records(
        with_suggestions=True, with_responses=True)}
    assert len(records) == 4
    for rid, value in (("r-paris", "yes"), ("r-lyon", "no"), ("r-eight", "yes"), ("r-six", "no")):
        s = records[rid].suggestions["verdict"]
        assert (s.value, s.score, s.agent) == (value, 0.8, "icm/tiny-model")
        assert records[rid].suggestions["note"].value == "from another tool"  # other suggestions kept
    assert records["r-paris"].metadata["group"] == "g1"  # metadata sent back unchanged
    assert records["r-paris"].fields["answer"] == "Paris"
    assert [r.value for r in records["r-six"].responses["verdict"]] == ["no"]  # human answer kept


def test_argilla_pool_errors_come_before_any_labelling(client, dataset_name, server_args):
    _source_dataset(client, dataset_name)
    task = get_task("facts")
    with pytest.raises(ICMError, match="has no question 'label'.*verdict"):
        argilla_cli.load_pool(_label_args("--argilla-dataset", dataset_name, "--question", "label", *server_args), task)
    with pytest.raises(ICMError, match=r"no field for the prompt's 'question'.*--field-map question=FIELD"):
        argilla_cli.load_pool(_label_args("--argilla-dataset", dataset_name, "--question", "verdict", *server_args), task)
    with pytest.raises(ICMError, match="has no field 'text'"):
        argilla_cli.load_pool(_label_args("--argilla-dataset", dataset_name, "--question", "verdict",
                                          "--field-map", "question=text,choice=answer", *server_args), task)
    with pytest.raises(ICMError, match="needs --question"):
        argilla_cli.load_pool(_label_args("--argilla-dataset", dataset_name, *server_args), task)
    with pytest.raises(ICMError, match="workspace 'elsewhere' does not exist"):
        argilla_cli.load_pool(_label_args("--push", "x", "--workspace", "elsewhere", *server_args), task)


def test_clamped_rerun_keeps_the_human_label(client, dataset_name, server_args, tmp_path, tiny_model_dir, icm_cli):
    common = ["label", "--task", "facts", "--model", str(tiny_model_dir), "--limit", "8", "--iterations", "24",
              "--seed", "0", "--push", dataset_name, *server_args]
    first = icm_cli(*common, "--out", str(tmp_path / "run1"))
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"pushed 8 records to {dataset_name!r}" in first.stdout
    labels = {r["id"]: r for r in map(json.loads, (tmp_path / "run1" / "labels.jsonl").read_text().splitlines())}
    ex_id = sorted(labels)[0]
    human = 1 - labels[ex_id]["label"]
    # the reviewer disagrees with ICM on one record and submits the other label
    ds = find_dataset(client, dataset_name, "argilla")
    record = next(r for r in ds.records if r.id == ex_id)
    record.responses.add(rg.Response("label", ["False", "True"][human], user_id=client.me.id, status="submitted"))
    ds.records.log([record])

    pulled = icm_cli("pull", "--dataset", dataset_name, "--out", str(tmp_path / "human.jsonl"), *server_args)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads((tmp_path / "human.jsonl").read_text()) == {"id": ex_id, "label": human}

    second = icm_cli(*common, "--out", str(tmp_path / "run2"), "--clamp", str(tmp_path / "human.jsonl"),
                     "--compare-to", str(tmp_path / "run1"))
    assert second.returncode == 0, second.stderr[-3000:]
    relabelled = {r["id"]: r for r in map(json.loads, (tmp_path / "run2" / "labels.jsonl").read_text().splitlines())}
    assert relabelled[ex_id]["label"] == human
    clamp = json.loads((tmp_path / "run2" / "report.json").read_text())["clamp"]
    assert clamp["clamped"] == 1 and clamp["clamped_differs_from_previous"] == 1
    assert clamp["changed_by_clamp"] is not None

    records = {r.id: r for r in ds.records(with_suggestions=True, with_responses=True)}
    assert len(records) == 8  # re-pushed in place
    api_key = next(a for a in server_args if a.startswith("--api-key=")).split("=", 1)[1]
    for path in (tmp_path / "run1").iterdir():
        if path.is_file():
            assert api_key not in path.read_text(errors="replace"), f"API key written to {path}"
    assert records[ex_id].suggestions["label"].value == ["False", "True"][human]
    assert [r.value for r in records[ex_id].responses["label"]] == [["False", "True"][human]]


def test_data_survives_down_and_up_and_the_index_is_rebuilt(client, argilla_stack, run_dir, dataset_name, icm_cli):
    from icm_plugin.core.run_folder import RunFolder
    from icm_plugin.integrations.argilla.review import push_run

    stack, _ = argilla_stack
    push_run(client, RunFolder.read(run_dir), dataset_name, echo=lambda _m: None)
    before = stack.status()
    down = icm_cli("argilla", "down", "--home", str(stack.home))
    assert down.returncode == 0 and "stopped worker, server, osmem, redis" in down.stdout
    assert not any(stack.status().running.values()) if stack.status() else True
    status = icm_cli("argilla", "status", "--home", str(stack.home))
    assert status.returncode == 1
    up = icm_cli("argilla", "up", "--home", str(stack.home))
    assert up.returncode == 0, up.stdout + up.stderr
    after = stack.status()
    assert after.url == before.url and after.credentials == before.credentials
    assert after.pids != before.pids
    status = icm_cli("argilla", "status", "--home", str(stack.home))
    assert status.returncode == 0 and after.credentials.api_key in status.stdout

    from icm_plugin.integrations.argilla.client import connect

    again = connect(after.url, after.credentials.api_key)
    ds = find_dataset(again, dataset_name, "argilla")
    assert len(list(ds.records)) == 6
    # searching goes through the (in-memory, restarted) engine: it only works if the index was rebuilt
    flagged = ds.records(query=rg.Query(filter=rg.Filter(("metadata.in_flagged_pair", "==", "yes"))))
    assert sorted(r.id for r in flagged) == ["q2-2", "q2-3", "q3-4", "q3-5"]
    assert sorted(r.id for r in ds.records(query="Paris")) == ["q1-0"]


def test_logs_never_hold_a_secret(argilla_stack):
    stack, _ = argilla_stack
    secrets = {k: v for k, v in vars(stack.credentials()).items() if k != "username"}
    for log in (stack.home / "logs").iterdir():
        text = log.read_text(errors="replace")
        leaked = [name for name, value in secrets.items() if value in text]
        assert not leaked, f"{log} holds {leaked}"
    assert oct((stack.home / "credentials.json").stat().st_mode & 0o777) == "0o600"
