"""The review loop after a re-run (issue 12, sections 7 and 8), against the real local Argilla stack: the
conflicts dataset describes the current run, `icm pull` reads every answer box and both datasets into one
clamp file, names are checked before anything is written, the UI gets the dataset's URL and group order, and
the SDK prints no batch-size warning."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import argilla as rg
import httpx
import pytest

from icm_plugin.cli.main import build_parser, main
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla import cli as argilla_cli
from icm_plugin.integrations.argilla.client import find_dataset
from icm_plugin.integrations.argilla.review import STALE_NOTE, push_run
from icm_plugin.integrations.argilla.stack import LocalStack, _fresh_log

pytestmark = pytest.mark.argilla

QUIET = {"echo": lambda _msg: None}
REPO = Path(__file__).resolve().parents[2]


def _conflict(ids, before, after, resolution="repaired", iteration=3):
    return {"iteration": iteration, "rule": "exactly_one", "ids": list(ids), "labels_before": dict(zip(ids, before, strict=True)),
            "labels_after": dict(zip(ids, after, strict=True)), "resolution": resolution}


def _answer(client, name: str, match, answers: dict[str, str]) -> None:
    ds = find_dataset(client, name, "argilla")
    record = next(r for r in ds.records(batch_size=500) if match(r))
    for question, value in answers.items():
        record.responses.add(rg.Response(question, value, user_id=client.me.id, status="submitted"))
    ds.records.log([record])


def _records(client, name: str, **kw) -> dict[str, rg.Record]:
    return {r.id: r for r in find_dataset(client, name, "argilla").records(batch_size=500, **kw)}


def test_repush_leaves_the_conflicts_dataset_describing_the_current_run(client, tmp_path, make_run, dataset_name):
    first = make_run(tmp_path / "first", conflicts=[
        _conflict(["q2-2", "q2-3"], [1, 1], [1, 0]),
        _conflict(["q3-4", "q3-5"], [0, 0], [1, 0]),
    ])
    push_run(client, RunFolder.read(first), dataset_name, **QUIET)
    conflicts_name = dataset_name + "-conflicts"
    # a reviewer answers the q3 group; nobody answers the q2 one
    _answer(client, conflicts_name, lambda r: r.metadata["example_1_id"] == "q3-4",
            {"label_1": "True", "label_2": "False"})

    # the re-run: every label flipped, and only the q1 pair flagged
    rows = [("q1", "What is the capital of France?", "Paris", 0, 0.66),
            ("q1", "What is the capital of France?", "Lyon", 1, 0.66),
            ("q2", "How many legs does a spider have?", "Six", 0, 0.66),
            ("q2", "How many legs does a spider have?", "Eight", 0, 0.66),
            ("q3", "Which planet is closest to the sun?", "Venus", 1, 0.66),
            ("q3", "Which planet is closest to the sun?", "<b>Mercury</b> **bold?**", 1, 0.66)]
    second = make_run(tmp_path / "second", rows=rows, conflicts=[_conflict(["q1-0", "q1-1"], [1, 1], [0, 1])])
    said = []
    result = push_run(client, RunFolder.read(second), dataset_name, echo=said.append)
    assert (result.conflicts_removed, result.conflicts_marked) == (1, 1)
    assert any("1 group(s) this run no longer flags removed" in s and "1 such group(s) kept" in s for s in said)

    records = _records(client, conflicts_name, with_suggestions=True, with_responses=True)
    assert len(records) == 2  # q1 (current) and q3 (answered, marked); q2 deleted
    by_first = {r.metadata["example_1_id"]: r for r in records.values()}
    assert set(by_first) == {"q1-0", "q3-4"}
    current = by_first["q1-0"]
    assert current.metadata["times_flagged"] == 1 and not current.fields["rule"].startswith(STALE_NOTE)
    stale = by_first["q3-4"]
    assert stale.fields["rule"].startswith(STALE_NOTE) and stale.metadata["times_flagged"] == 0
    assert [r.value for r in stale.responses["label_1"]] == ["True"]  # the reviewer's answer is kept
    # text and suggestions agree with the review dataset (the second run's labels), not with the first run's
    review = _records(client, dataset_name, with_suggestions=True)
    for n, ex_id in ((1, "q3-4"), (2, "q3-5")):
        now = review[ex_id].suggestions["label"].value
        assert stale.suggestions[f"label_{n}"].value == now
        assert f"ICM's label now: {now}" in stale.fields[f"example_{n}"]
    # pushing the same run again changes nothing more
    again = push_run(client, RunFolder.read(second), dataset_name, **QUIET)
    assert (again.conflicts_removed, again.conflicts_marked) == (0, 1)
    assert len(_records(client, conflicts_name)) == 2


def _group_of_three_run(make_run, folder: Path) -> Path:
    rows = [("g", "Which of these is a prime?", text, 0, 0.6) for text in ("Four", "Six", "Seven")]
    return make_run(folder, rows=rows, conflicts=[_conflict(["g-0", "g-1", "g-2"], [0, 0, 0], [0, 0, 0], "kept")])


def test_pull_reads_the_other_examples_box(client, tmp_path, make_run, dataset_name, server_args):
    push_run(client, RunFolder.read(_group_of_three_run(make_run, tmp_path / "run")), dataset_name, **QUIET)
    conflicts_name = dataset_name + "-conflicts"
    _answer(client, conflicts_name, lambda r: True,
            {"label_1": "False", "label_2": "False", "others_labels": "g-2: True\n"})
    out = tmp_path / "human.jsonl"
    assert main(["pull", "--dataset", conflicts_name, "--out", str(out), *server_args]) == 0
    rows = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["id"])
    assert rows == [{"id": "g-0", "label": 0}, {"id": "g-1", "label": 0}, {"id": "g-2", "label": 1}]


@pytest.mark.parametrize(("typed", "says"), [
    ("g-2 True", "line 1 'g-2 True' is not `id: label`"),
    ("\ng-9: True", "line 2 names id 'g-9', which that record does not show (its other examples: g-2)"),
    ("g-2: maybe", "gives 'g-2' the label 'maybe'; use one of true/false"),
], ids=["no-colon", "unknown-id", "bad-label"])
def test_bad_other_examples_answer(client, tmp_path, make_run, dataset_name, server_args, capsys, typed, says):
    """A malformed line in the "Other examples" box is one clear error naming the record and line."""
    push_run(client, RunFolder.read(_group_of_three_run(make_run, tmp_path / "run")), dataset_name, **QUIET)
    _answer(client, dataset_name + "-conflicts", lambda r: True,
            {"label_1": "False", "label_2": "False", "others_labels": typed})
    out = tmp_path / "human.jsonl"
    assert main(["pull", "--dataset", dataset_name + "-conflicts", "--out", str(out), *server_args]) == 2
    err = capsys.readouterr().err
    assert f"dataset '{dataset_name}-conflicts', record conflict-" in err and says in err
    assert "Traceback" not in err and not out.exists()


def test_pull_of_a_review_dataset_reads_its_conflicts_too(client, run_dir, dataset_name, tmp_path, server_args,
                                                          capsys):
    push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    _answer(client, dataset_name, lambda r: r.id == "q1-1", {"label": "True"})
    _answer(client, dataset_name, lambda r: r.id == "q2-3", {"label": "True"})
    _answer(client, dataset_name + "-conflicts", lambda r: r.metadata["example_1_id"] == "q2-2",
            {"label_1": "False", "label_2": "False"})
    out = tmp_path / "human.jsonl"
    assert main(["pull", "--dataset", dataset_name, "--out", str(out), *server_args]) == 0
    rows = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["id"])
    assert rows == [{"id": "q1-1", "label": 1}, {"id": "q2-2", "label": 0}]  # q2-3: one True, one False
    said = capsys.readouterr().out
    assert f"2 from {dataset_name!r} and 2 from '{dataset_name}-conflicts'" in said
    assert "1 example(s) left out: answers split evenly" in said
    assert "1 example(s) answered differently in the datasets (e.g. 'q2-3')" in said


def test_a_name_too_long_for_the_conflicts_dataset_writes_neither(client, run_dir, server_args, capsys):
    name = "n" * 191  # fits alone, not with "-conflicts"
    assert main(["push", str(run_dir), "--dataset", name, *server_args]) == 2
    err = capsys.readouterr().err
    assert "exceeds Argilla's 200" in err and "at most 190 characters" in err and "Traceback" not in err
    assert find_dataset(client, name, "argilla") is None
    # `icm label --push` says so before the labelling starts
    args = build_parser().parse_args(["label", "--task", "facts", "--push", name, *server_args])
    with pytest.raises(ICMError, match="exceeds Argilla's 200"):
        argilla_cli.load_pool(args, get_task("facts"))


def test_push_prints_the_datasets_own_url(client, run_dir, dataset_name, server_args, capsys, argilla_stack):
    assert main(["push", str(run_dir), "--dataset", dataset_name, *server_args]) == 0
    out = capsys.readouterr().out
    url = argilla_stack[0].status().url
    ds = find_dataset(client, dataset_name, "argilla")
    cds = find_dataset(client, dataset_name + "-conflicts", "argilla")
    assert f"review it at {url}/dataset/{ds.id}/annotation-mode" in out
    assert f"flagged groups: {url}/dataset/{cds.id}/annotation-mode" in out
    assert httpx.get(f"{url}/dataset/{ds.id}/annotation-mode", timeout=10).status_code == 200


def test_records_of_one_question_sit_next_to_each_other(client, tmp_path, make_run, dataset_name):
    rows = [("a", "Question A?", "a1", 1, 0.5), ("b", "Question B?", "b1", 1, 0.5), ("a", "Question A?", "a2", 0, 0.5),
            ("c", "Question C?", "c1", 0, 0.5), ("b", "Question B?", "b2", 0, 0.5), ("a", "Question A?", "a3", 0, 0.5)]
    push_run(client, RunFolder.read(make_run(tmp_path / "run", rows=rows, conflicts=[])), dataset_name, **QUIET)
    # the order the server lists them in (the UI's order: by insertion)
    groups = [r.metadata["consistency_group"] for r in find_dataset(client, dataset_name, "argilla").records]
    assert groups == ["a", "a", "a", "b", "b", "c"]


def test_push_and_pull_print_no_sdk_batch_size_warning(client, run_dir, dataset_name, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
        push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)
    assert not [r for r in caplog.records if "was normalized" in r.getMessage()]


# ---- the local stack's files --------------------------------------------------------------------------------

def test_the_stack_home_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        stack = LocalStack(tmp_path / "a" / "b" / "home", venv=tmp_path / "elsewhere")
        stack.credentials()
    finally:
        os.umask(old)
    assert oct(stack.home.stat().st_mode & 0o777) == "0o700"
    (tmp_path / "loose").mkdir(mode=0o755)
    LocalStack(tmp_path / "loose", venv=tmp_path / "elsewhere").credentials()
    assert oct((tmp_path / "loose").stat().st_mode & 0o777) == "0o700"


def test_a_restart_keeps_the_previous_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("Traceback: the crash before the restart\n")
    assert _fresh_log(log) == log and not log.exists()
    assert (tmp_path / "server.log.1").read_text().startswith("Traceback: the crash")
    log.write_text("")  # an empty log is not worth keeping over the last real one
    _fresh_log(log)
    assert (tmp_path / "server.log.1").read_text().startswith("Traceback: the crash")


def test_argilla_sh_prints_the_venv_it_uses(tmp_path, argilla_stack):
    """With ICM_ARGILLA_HOME set (and no ICM_ARGILLA_VENV) the server venv is HOME/venv; the script says so."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "venv").symlink_to(argilla_stack[0].venv)  # the complete session venv: nothing is built
    env = {k: v for k, v in os.environ.items() if k != "ICM_ARGILLA_VENV"}
    env["ICM_ARGILLA_HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    done = subprocess.run(["bash", str(REPO / ".ci" / "argilla.sh")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"server venv: {home / 'venv'})" in done.stdout
