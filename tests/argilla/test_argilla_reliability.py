"""The run's reliability verdict in Argilla (issue 21, item 2), against the real local stack: records the model
itself disputes carry `against_model = yes` (and `model_prefers`), the SDK filters on it, the guidelines show
the verdict (a flagged run's open with a warning), and runs and datasets from before the check keep working."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pytest
from verdict_marks import PASSED, mark_verdict

from icm_plugin.core.run_folder import RunFolder
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.client import find_dataset
from icm_plugin.integrations.argilla.review import push_run, review_records
from icm_plugin.integrations.argilla.schema import WARNING, review_settings

pytestmark = pytest.mark.argilla

QUIET = {"echo": lambda _msg: None}
# ids of conftest.FACTS the model disputes, with the label index it prefers
AGAINST = {"q2-2": 0, "q3-5": 1}
SIGNALS = {"agreement": 0.3333, "margin": 1.25}  # agreement past its threshold, the margin not


def _reliable(folder: Path, against: dict[str, int] = AGAINST, signals: dict = SIGNALS) -> Path:
    """Add what `icm label` now writes to a conftest run folder: per-record marks and report.json's verdict."""
    rows = [json.loads(line) for line in (folder / "labels.jsonl").read_text().splitlines()]
    report = json.loads((folder / "report.json").read_text())
    report["reliability"] = mark_verdict(rows, against, **signals)
    (folder / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def _records(client, name: str, **kw) -> dict[str, rg.Record]:
    ds = find_dataset(client, name, "argilla")
    assert ds is not None, f"dataset {name} missing"
    return {r.id: r for r in ds.records(batch_size=500, **kw)}


def _against_ids(client, name: str, value: str = "yes") -> list[str]:
    ds = find_dataset(client, name, "argilla")
    return sorted(r.id for r in ds.records(query=rg.Query(filter=rg.Filter(("metadata.against_model", "==", value)))))


def test_run_folder_reads_against_model_and_old_runs_have_none(tmp_path, make_run):
    run = RunFolder.read(_reliable(make_run(tmp_path / "new")))
    assert run.against_model == AGAINST
    assert run.model_checked == {e.id for e in run.examples}
    assert run.reliability is not None and run.reliability["flag"] is True
    old = RunFolder.read(make_run(tmp_path / "old"))
    assert (old.against_model, old.model_checked, old.reliability) == ({}, frozenset(), None)
    bad = _reliable(make_run(tmp_path / "bad"), against={"q1-0": 2})  # facts has two labels: 0 and 1
    with pytest.raises(ICMError, match=r"line 1: \"model_prefers\" must be a label index 0 to 1"):
        RunFolder.read(bad)


def test_flagged_run_marks_disputed_records_and_warns_in_guidelines(client, tmp_path, make_run, dataset_name):
    run = RunFolder.read(_reliable(make_run(tmp_path / "run")))
    push_run(client, run, dataset_name, **QUIET)
    ds = find_dataset(client, dataset_name, "argilla")
    props = {m.name: m for m in ds.settings.metadata}
    assert isinstance(props["against_model"], rg.TermsMetadataProperty)
    assert set(props["against_model"].options) == {"yes", "no"}
    assert set(props["model_prefers"].options) == {"True", "False"}
    assert isinstance(props["confidence"], rg.FloatMetadataProperty)
    records = _records(client, dataset_name)
    assert {i: r.metadata["against_model"] for i, r in records.items()} == {
        e.id: ("yes" if e.id in AGAINST else "no") for e in run.examples}
    assert {i: r.metadata.get("model_prefers") for i, r in records.items() if "model_prefers" in r.metadata} == {
        "q2-2": "False", "q3-5": "True"}
    # the filter a reviewer uses, on the server (through the search engine)
    assert _against_ids(client, dataset_name) == sorted(AGAINST)
    assert _against_ids(client, dataset_name, "no") == sorted(set(records) - set(AGAINST))
    guidelines = ds.settings.guidelines
    assert guidelines.startswith(WARNING)
    assert "## Reliability" in guidelines and "Verdict: flagged" in guidelines
    reasons = run.report["reliability"]["reasons"]
    assert len(reasons) == 2 and all(reason in guidelines for reason in reasons)  # agreement, against the model
    assert "`agreement_zero_shot_rule` = 0.33 (flagged below 0.6)" in guidelines
    assert "`margin` = 1.25" in guidelines and "`against_model` = 0.33" in guidelines
    assert "Below 1/2 (0.50) the model itself prefers another label" in guidelines


def test_run_not_flagged_has_no_warning(client, tmp_path, make_run, dataset_name):
    run = _reliable(make_run(tmp_path / "run"), against={"q2-2": 0}, signals=PASSED)  # 1 of 6 against the model
    push_run(client, RunFolder.read(run), dataset_name, **QUIET)
    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert "WARNING" not in guidelines and "Verdict: not flagged" in guidelines
    assert _against_ids(client, dataset_name) == ["q2-2"]  # the record is marked all the same


def test_run_from_before_the_check_pushes_without_values(client, run_dir, dataset_name):
    result = push_run(client, RunFolder.read(run_dir), dataset_name, **QUIET)  # conftest: no marks, no verdict
    assert result.records == 6
    records = _records(client, dataset_name)
    assert len(records) == 6
    assert not any({"against_model", "model_prefers"} & set(r.metadata) for r in records.values())
    assert _against_ids(client, dataset_name) == [] and _against_ids(client, dataset_name, "no") == []
    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert "WARNING" not in guidelines and "before ICM checked its own reliability" in guidelines


def test_dataset_pushed_before_the_check_gets_the_properties(client, tmp_path, make_run, dataset_name):
    """A dataset an older version created (no `against_model`/`model_prefers` properties, old guidelines) takes
    a new run: the properties are added, the records updated in place, answers kept, the guidelines replaced."""
    old_run = RunFolder.read(make_run(tmp_path / "old"))
    settings = review_settings(client, old_run.task, old_run.model, old_run.rule, dataset_name)
    settings.metadata.remove("against_model")
    settings.metadata.remove("model_prefers")
    settings.guidelines = "Guidelines of an older version."
    rg.Dataset(name=dataset_name, workspace="argilla", settings=settings, client=client).create()
    find_dataset(client, dataset_name, "argilla").records.log(review_records(old_run))  # what the old push sent
    ds = find_dataset(client, dataset_name, "argilla")
    assert not {"against_model", "model_prefers"} & {m.name for m in ds.settings.metadata}
    record = next(r for r in ds.records(batch_size=500) if r.id == "q1-1")
    record.responses.add(rg.Response("label", "True", user_id=client.me.id, status="submitted"))
    ds.records.log([record])

    push_run(client, RunFolder.read(_reliable(make_run(tmp_path / "new"))), dataset_name, **QUIET)
    push_run(client, RunFolder.read(_reliable(make_run(tmp_path / "new"))), dataset_name, **QUIET)  # again: no-op
    ds = find_dataset(client, dataset_name, "argilla")
    assert {"against_model", "model_prefers"} <= {m.name for m in ds.settings.metadata}
    assert ds.settings.guidelines.startswith(WARNING)
    records = _records(client, dataset_name, with_responses=True)
    assert len(records) == 6  # no duplicates
    assert [r.value for r in records["q1-1"].responses["label"]] == ["True"]
    assert _against_ids(client, dataset_name) == sorted(AGAINST)


def test_repush_replaces_the_marks(client, tmp_path, make_run, dataset_name):
    """A record the model no longer disputes loses `model_prefers`; the guidelines follow the last run."""
    push_run(client, RunFolder.read(_reliable(make_run(tmp_path / "first"))), dataset_name, **QUIET)
    push_run(client, RunFolder.read(_reliable(make_run(tmp_path / "second"), against={"q1-0": 0}, signals=PASSED)),
             dataset_name, **QUIET)
    records = _records(client, dataset_name)
    assert len(records) == 6
    assert _against_ids(client, dataset_name) == ["q1-0"]
    assert {i for i, r in records.items() if "model_prefers" in r.metadata} == {"q1-0"}
    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert not guidelines.startswith(WARNING) and "Verdict: not flagged" in guidelines
