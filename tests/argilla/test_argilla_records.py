"""What gets sent to Argilla, and the checks made before anything is sent (no server needed)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from icm_plugin.core.run_folder import RunFolder
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.answers import label_map
from icm_plugin.integrations.argilla.client import RETRY, resolve_server
from icm_plugin.integrations.argilla.review import conflict_records, review_records
from icm_plugin.integrations.argilla.schema import label_values, plain_text, prompt_fields, question_title
from icm_plugin.integrations.argilla.source import parse_field_map
from icm_plugin.integrations.argilla.stack import LocalStack


def test_fields_follow_the_task_prompt():
    assert [(f.slot, f.name, f.title) for f in prompt_fields(get_task("facts"))] == [
        ("question", "question", "Question"), ("choice", "claim", "Claim")]
    assert [f.name for f in prompt_fields(get_task("comparisons"))] == ["question", "response_1", "response_2"]
    assert [f.name for f in prompt_fields(get_task("alpaca"))] == ["human", "response_1", "response_2"]
    assert question_title(get_task("facts")) == "I think this claim is"
    assert label_values(get_task("facts")) == ("False", "True")


def test_review_records_carry_label_as_scored_suggestion(run_dir):
    run = RunFolder.read(run_dir)
    records = {r.id: r for r in review_records(run)}
    assert list(records) == [e.id for e in run.examples]
    paris = records["q1-0"]
    assert paris.fields["question"] == "What is the capital of France?"
    assert paris.fields["claim"] == "Paris"
    s = paris.suggestions["label"]
    assert (s.value, s.score, s.agent) == ("True", 0.91, "icm/tiny-model")
    assert records["q1-1"].suggestions["label"].value == "False"
    assert paris.metadata["consistency_group"] == "q1" and paris.metadata["in_flagged_pair"] == "no"
    assert records["q2-2"].metadata["in_flagged_pair"] == "yes"
    assert records["q1-1"].metadata["confidence"] == 0.88


def test_record_text_is_escaped_so_the_ui_shows_it_and_never_runs_it(run_dir):
    run = RunFolder.read(run_dir)
    mercury = {r.id: r for r in review_records(run)}["q3-5"]
    assert mercury.fields["claim"] == "&lt;b&gt;Mercury&lt;/b&gt; **bold?**"
    assert plain_text('<img src=x onerror="alert(1)">') == '&lt;img src=x onerror="alert(1)"&gt;'


def test_conflicts_merge_repeats_of_a_group_and_keep_the_last_resolution(run_dir):
    run = RunFolder.read(run_dir)
    records = conflict_records(run)
    assert len(records) == 2
    spider = next(r for r in records if r.metadata["example_1_id"] == "q2-2")
    assert spider.metadata["times_flagged"] == 2
    assert spider.metadata["resolution"] == "unresolved"
    assert spider.metadata["rule_broken"] == "exactly_one"
    assert "Exactly one of these examples should be True" in spider.fields["rule"]
    assert "Claim: Six" in spider.fields["example_1"] and "Claim: Eight" in spider.fields["example_2"]
    assert "when flagged: True; after its fix: True" in spider.fields["example_2"]  # the last occurrence
    assert spider.suggestions["label_1"].value == "True"
    # same group pushed again -> same record id
    assert spider.id == next(r for r in conflict_records(run) if r.metadata["example_1_id"] == "q2-2").id
    venus = next(r for r in records if r.metadata["example_1_id"] == "q3-4")
    assert "after its fix: unlabelled" in venus.fields["example_2"]


def test_run_folder_errors_name_the_file(tmp_path, make_run):
    with pytest.raises(ICMError, match="no such run folder"):
        RunFolder.read(tmp_path / "nope")
    run = make_run(tmp_path / "run")
    (run / "labels.jsonl").write_text(json.dumps({"id": "q1-0", "label": 1}) + "\n")
    with pytest.raises(ICMError, match=r"labels.jsonl: no label for 5 example"):
        RunFolder.read(run)
    (run / "labels.jsonl").write_text(json.dumps({"id": "q1-0", "label": "yes"}) + "\n")
    with pytest.raises(ICMError, match=r"labels.jsonl: line 1"):
        RunFolder.read(run)


def test_field_map_parsing():
    assert parse_field_map("question=prompt, choice=answer,consistency_id=metadata.group") == {
        "question": "prompt", "choice": "answer", "consistency_id": "metadata.group"}
    assert parse_field_map(None) == {}
    with pytest.raises(ICMError, match="not SLOT=FIELD"):
        parse_field_map("question")
    with pytest.raises(ICMError, match="unknown slot 'text'"):
        parse_field_map("text=prompt")


class _Labels:
    def __init__(self, labels):
        self.labels, self.name = labels, "verdict"


def test_label_map_finds_true_or_asks():
    assert label_map(_Labels(["yes", "no"]), "d") == {"yes": 1, "no": 0}
    assert label_map(_Labels(["False", "True"]), "d") == {"False": 0, "True": 1}
    with pytest.raises(ICMError, match="--true-label"):
        label_map(_Labels(["cat", "dog"]), "d")
    assert label_map(_Labels(["cat", "dog"]), "d", true_label="dog") == {"cat": 0, "dog": 1}
    # more than two labels (issue 20): each label is its position in the question, as the task's doc_to_choice
    assert label_map(_Labels(["a", "b", "c"]), "d") == {"a": 0, "b": 1, "c": 2}
    with pytest.raises(ICMError, match="at least two labels"):
        label_map(_Labels(["a"]), "d")


def test_transient_server_errors_are_retried_for_idempotent_requests():
    from httpx_retries import Retry, RetryTransport

    calls = {"PUT": 0, "POST": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls[request.method] += 1
        return httpx.Response(503 if calls[request.method] < 3 else 200)

    retry = Retry(total=RETRY.total, backoff_factor=0, status_forcelist=[503])
    with httpx.Client(transport=RetryTransport(transport=httpx.MockTransport(handler), retry=retry)) as http:
        assert http.put("http://argilla/api/v1/datasets/x/records/bulk").status_code == 200
        assert http.post("http://argilla/api/v1/datasets").status_code == 503  # not idempotent: not retried
    assert calls == {"PUT": 3, "POST": 1}


def test_no_server_configured_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    with pytest.raises(ICMError, match="icm argilla up"):
        resolve_server(home=str(tmp_path))
    with pytest.raises(ICMError, match="no API key"):
        resolve_server(api_url="http://127.0.0.1:1")
    assert resolve_server("http://h:1/", "k") == ("http://h:1", "k")


def test_stack_secrets_are_random_per_home_and_private(tmp_path):
    a, b = LocalStack(tmp_path / "a", venv=tmp_path / "v"), LocalStack(tmp_path / "b", venv=tmp_path / "v")
    ca, cb = a.credentials(), b.credentials()
    assert ca == a.credentials()  # made once, then read
    assert ca.api_key != cb.api_key and ca.password != cb.password and ca.auth_secret_key != cb.auth_secret_key
    mode = stat.S_IMODE(os.stat(tmp_path / "a" / "credentials.json").st_mode)
    assert mode == 0o600
    assert a.status() is None
    assert a.down(echo=lambda _m: None) == []


def test_down_never_signals_a_recorded_pid_that_is_now_another_process(tmp_path):
    stack = LocalStack(tmp_path, venv=tmp_path / "v")
    # this test process, recorded with a different start time: down must leave it alone
    (tmp_path / "stack.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:1", "port": 1, "pids": {"server": {"pid": os.getpid(), "start": "1"}}}))
    assert stack.down(echo=lambda _m: None) == []


def test_cli_checks_flags_before_connecting(run_dir, capsys):
    from icm_plugin.cli.main import main

    assert main(["push", str(Path(run_dir) / "missing"), "--dataset", "d", "--api-url", "http://127.0.0.1:9",
                 "--api-key", "k"]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_made_secrets_never_begin_with_a_dash(monkeypatch):
    # secrets.token_urlsafe begins with "-" one time in 64; such an API key read as an option after --api-key
    from icm_plugin.integrations.argilla import stack as stack_module

    tokens = iter(["-starts-with-dash", "-again", "fine-key"])
    monkeypatch.setattr(stack_module.secrets, "token_urlsafe", lambda n: next(tokens))
    assert stack_module.make_secret(24) == "fine-key"
