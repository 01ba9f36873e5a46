"""The run's reliability verdict on the user's OWN dataset (`icm label --argilla-dataset NAME --question Q`),
against the real local stack: the write-back adds `icm_against_model`/`icm_model_prefers` to the records the run
checked (and the properties to the dataset), keeps the user's metadata and guidelines, ends the guidelines with
one "ICM reliability" section that a re-run replaces, prints the verdict, and a run from before the check writes
its suggestions with no verdict."""

from __future__ import annotations

import json
from pathlib import Path

import argilla as rg
import pytest
from test_argilla_loop import SOURCE  # the user's records: id, prompt, answer, group
from verdict_marks import FLAGGED, PASSED, mark_verdict

from icm_plugin.cli.main import build_parser
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla import cli as argilla_cli
from icm_plugin.integrations.argilla.client import find_dataset
from icm_plugin.integrations.argilla.source import (
    SECTION_END,
    SECTION_HEADING,
    with_section,
    write_suggestions,
)

pytestmark = pytest.mark.argilla

LABELS = {"r-paris": 1, "r-lyon": 0, "r-eight": 0, "r-six": 1}  # ICM's labels (facts: 1 = True = "yes")
AGAINST = {"r-eight": 1, "r-six": 0}  # the records the model itself disputes, with the label index it prefers
REASONS = mark_verdict([{"id": i} for i in LABELS], AGAINST, **FLAGGED)["reasons"]  # agreement, margin, against
OWN_GUIDELINES = "Our own rules: answer `yes` when the answer is right.\n\n* Be careful with <b>trick</b> questions."
MAP = "question=prompt,choice=answer,consistency_id=metadata.group"


def _user_dataset(client, name: str, guidelines: str | None = OWN_GUIDELINES) -> rg.Dataset:
    """A dataset the user made: their own guidelines and metadata, including an `against_model` of their own."""
    ds = rg.Dataset(name=name, workspace="argilla", client=client, settings=rg.Settings(
        guidelines=guidelines,
        fields=[rg.TextField(name="prompt", client=client), rg.TextField(name="answer", client=client)],
        questions=[rg.LabelQuestion(name="verdict", labels=["yes", "no"], client=client)],
        metadata=[rg.TermsMetadataProperty(name="group", client=client),
                  rg.TermsMetadataProperty(name="against_model", client=client, options=["mine", "theirs"])]))
    ds.create()
    ds.records.log([rg.Record(id=i, fields={"prompt": p, "answer": a}, metadata={"group": g, "against_model": "mine"})
                    for i, p, a, g in SOURCE])
    return ds


def _args(name: str, server_args: list[str]):
    return build_parser().parse_args(["label", "--task", "facts", "--argilla-dataset", name, "--question", "verdict",
                                      "--field-map", MAP, *server_args])


def _run(folder: Path, args, against: dict[str, int] | None = AGAINST, signals: dict = FLAGGED) -> Path:
    """The run folder `icm label` writes for the dataset's pool; ``against`` None: a run from before the
    reliability check (no per-record marks, no verdict in report.json)."""
    examples = argilla_cli.load_pool(args, get_task("facts"))
    folder.mkdir(parents=True)
    (folder / "examples.jsonl").write_text("".join(json.dumps(e.to_dict()) + "\n" for e in examples))
    rows = [{"id": e.id, "label": LABELS[e.id], "confidence": 0.8} for e in examples]
    report = {"task": "facts", "model": "tiny-model"}
    if against is not None:
        report["reliability"] = mark_verdict(rows, against, **signals)
    (folder / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def _records(client, name: str) -> dict[str, rg.Record]:
    ds = find_dataset(client, name, "argilla")
    return {r.id: r for r in ds.records(batch_size=500, with_suggestions=True, with_responses=True)}


def _icm_against(client, name: str, value: str = "yes") -> list[str]:
    ds = find_dataset(client, name, "argilla")
    query = rg.Query(filter=rg.Filter(("metadata.icm_against_model", "==", value)))
    return sorted(r.id for r in ds.records(query=query))


def test_flagged_run_marks_the_users_records_and_keeps_their_metadata_and_guidelines(
        client, dataset_name, server_args, tmp_path, capsys):
    _user_dataset(client, dataset_name)
    args = _args(dataset_name, server_args)
    run = _run(tmp_path / "run", args)
    capsys.readouterr()
    argilla_cli.after_label(args, run)  # what `icm label --argilla-dataset` does after labelling
    out = capsys.readouterr().out

    ds = find_dataset(client, dataset_name, "argilla")
    props = {m.name: m for m in ds.settings.metadata}
    assert set(props) == {"group", "against_model", "icm_against_model", "icm_model_prefers"}
    assert isinstance(props["icm_against_model"], rg.TermsMetadataProperty)
    assert set(props["icm_against_model"].options) == {"yes", "no"}
    assert set(props["icm_model_prefers"].options) == {"yes", "no"}  # the question's own labels
    assert list(props["against_model"].options) == ["mine", "theirs"]  # the user's property, untouched

    records = _records(client, dataset_name)
    assert len(records) == 4
    for rid, record in records.items():
        assert record.suggestions["verdict"].value == ["no", "yes"][LABELS[rid]]
        assert record.suggestions["verdict"].score == 0.8
        assert record.metadata["icm_against_model"] == ("yes" if rid in AGAINST else "no")
        assert record.metadata["group"] == dict((i, g) for i, _, _, g in SOURCE)[rid]  # the user's values kept
        assert record.metadata["against_model"] == "mine"
    assert {i: r.metadata["icm_model_prefers"] for i, r in records.items() if "icm_model_prefers" in r.metadata} == {
        "r-eight": "yes", "r-six": "no"}
    # the filter the section tells a reviewer to use, on the server (through the search engine)
    assert _icm_against(client, dataset_name) == sorted(AGAINST)
    assert _icm_against(client, dataset_name, "no") == sorted(set(LABELS) - set(AGAINST))

    guidelines = ds.settings.guidelines
    assert guidelines.startswith(OWN_GUIDELINES)  # the user's text, as it was
    section = guidelines[len(OWN_GUIDELINES):]
    assert section.lstrip("\n").startswith(SECTION_HEADING + "\n")
    assert guidelines.rstrip("\n").endswith(SECTION_END)
    assert "Verdict: flagged" in section and all(reason in section for reason in REASONS)
    assert "`agreement_zero_shot_rule` = 0.50 (flagged below 0.6)" in section
    assert "2 record(s) here have `icm_against_model = yes`" in section
    assert "`icm_model_prefers` names that label" in section
    assert '"metadata.icm_against_model"' in section and '"metadata.against_model"' not in section
    assert "by agent `icm/tiny-model`" in section

    assert f"wrote 4 suggestion(s) for 'verdict' onto {dataset_name!r}" in out
    warning = [line for line in out.splitlines() if "WARNING" in line]
    assert len(warning) == 1 and "flagged" in warning[0] and all(reason in warning[0] for reason in REASONS)
    assert "2 record(s) have icm_against_model = yes" in warning[0]


def test_running_twice_leaves_one_section_and_no_duplicates(client, dataset_name, server_args, tmp_path, capsys):
    """The second run replaces the section in place (text the user added after it stays), updates the records
    in place (answers kept), and drops the marks the first run left on records it no longer disputes."""
    _user_dataset(client, dataset_name)
    args = _args(dataset_name, server_args)
    argilla_cli.after_label(args, _run(tmp_path / "first", args))
    ds = find_dataset(client, dataset_name, "argilla")
    added = "\n\nAdded by the user after ICM's first run."
    ds.settings.guidelines = ds.settings.guidelines + added
    ds.update()
    record = next(r for r in ds.records(batch_size=500) if r.id == "r-lyon")
    record.responses.add(rg.Response("verdict", "no", user_id=client.me.id, status="submitted"))
    ds.records.log([record])

    capsys.readouterr()
    argilla_cli.after_label(args, _run(tmp_path / "second", args, against={"r-paris": 0}, signals=PASSED))
    out = capsys.readouterr().out

    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert guidelines.count(SECTION_HEADING) == 1 and guidelines.count(SECTION_END) == 1
    assert guidelines.startswith(OWN_GUIDELINES) and guidelines.endswith(added)
    assert "Verdict: not flagged" in guidelines and "Verdict: flagged" not in guidelines
    assert not any(reason in guidelines for reason in REASONS)
    records = _records(client, dataset_name)
    assert len(records) == 4
    assert [r.value for r in records["r-lyon"].responses["verdict"]] == ["no"]
    assert _icm_against(client, dataset_name) == ["r-paris"]
    assert {i: r.metadata.get("icm_model_prefers") for i, r in records.items()} == {
        "r-paris": "no", "r-lyon": None, "r-eight": None, "r-six": None}
    assert all(r.metadata["against_model"] == "mine" for r in records.values())
    assert "WARNING" not in out and "reliability: not flagged" in out

    # a third run (flagged again) still finds the one section
    argilla_cli.after_label(args, _run(tmp_path / "third", args))
    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert guidelines.count(SECTION_HEADING) == 1 and "Verdict: flagged" in guidelines
    assert guidelines.startswith(OWN_GUIDELINES) and guidelines.endswith(added)
    assert len(_records(client, dataset_name)) == 4


def test_run_from_before_the_check_writes_suggestions_and_no_verdict(client, dataset_name, server_args, tmp_path,
                                                                     capsys):
    _user_dataset(client, dataset_name)
    args = _args(dataset_name, server_args)
    run = _run(tmp_path / "old", args, against=None)
    assert RunFolder.read(run).reliability is None
    capsys.readouterr()
    argilla_cli.after_label(args, run)
    out = capsys.readouterr().out

    ds = find_dataset(client, dataset_name, "argilla")
    assert ds.settings.guidelines == OWN_GUIDELINES
    assert {m.name for m in ds.settings.metadata} == {"group", "against_model"}
    records = _records(client, dataset_name)
    assert len(records) == 4
    assert {i: r.suggestions["verdict"].value for i, r in records.items()} == {
        i: ["no", "yes"][y] for i, y in LABELS.items()}
    assert not any({"icm_against_model", "icm_model_prefers"} & set(r.metadata) for r in records.values())
    assert all(r.metadata["against_model"] == "mine" for r in records.values())
    assert "wrote 4 suggestion(s)" in out and "flagged" not in out and "reliability" not in out


def test_run_from_before_the_check_replaces_a_stale_verdict(client, dataset_name, server_args, tmp_path):
    """After a checked run, an old run's suggestions must not show the first run's verdict or marks."""
    _user_dataset(client, dataset_name, guidelines=None)
    args = _args(dataset_name, server_args)
    argilla_cli.after_label(args, _run(tmp_path / "checked", args))
    assert find_dataset(client, dataset_name, "argilla").settings.guidelines.startswith(SECTION_HEADING)
    argilla_cli.after_label(args, _run(tmp_path / "old", args, against=None))
    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert guidelines.count(SECTION_HEADING) == 1 and "before ICM checked its own reliability" in guidelines
    assert "Verdict" not in guidelines
    records = _records(client, dataset_name)
    assert not any({"icm_against_model", "icm_model_prefers"} & set(r.metadata) for r in records.values())
    assert _icm_against(client, dataset_name) == []


def test_a_conflicting_property_is_one_clear_error_before_any_write(client, dataset_name, server_args, tmp_path):
    ds = _user_dataset(client, dataset_name)
    ds.settings.metadata.add(rg.FloatMetadataProperty(name="icm_against_model", client=client))
    ds.update()
    args = _args(dataset_name, server_args)
    run = RunFolder.read(_run(tmp_path / "run", args))
    with pytest.raises(ICMError, match="'icm_against_model' is a FloatMetadataProperty, needs a TermsMetadataProperty"):
        write_suggestions(client, run, dataset_name, None, "verdict", echo=lambda _m: None)
    records = _records(client, dataset_name)
    assert not any(len(r.suggestions) for r in records.values())  # nothing written
    assert find_dataset(client, dataset_name, "argilla").settings.guidelines == OWN_GUIDELINES


def test_with_section_keeps_the_text_around_it():
    section = f"{SECTION_HEADING}\n\nnew\n\n{SECTION_END}\n"
    assert with_section(None, section) == section
    assert with_section(None, section, append=False) is None
    assert with_section("Own.", section) == "Own.\n\n" + section
    assert with_section("Own.\n", section) == "Own.\n\n" + section
    assert with_section("Own.", section, append=False) == "Own."
    old = f"Own.\n\n{SECTION_HEADING}\n\nold\n\n{SECTION_END}\nAfter.\n"
    assert with_section(old, section) == f"Own.\n\n{section}After.\n"
    assert with_section(old, section, append=False) == f"Own.\n\n{section}After.\n"
    # the end line deleted by hand: the section runs to the end
    assert with_section(f"Own.\n\n{SECTION_HEADING}\n\nold\n", section) == "Own.\n\n" + section
    # a heading that only starts like ICM's is the user's
    assert with_section(f"{SECTION_HEADING}s of ours\n", section) == f"{SECTION_HEADING}s of ours\n\n" + section


def test_icm_label_writes_the_verdict_onto_the_users_dataset(client, dataset_name, server_args, tmp_path,
                                                            tiny_model_dir, icm_cli):
    """End to end: `icm label --argilla-dataset` (tiny model) writes what its run folder says."""
    _user_dataset(client, dataset_name)
    out = tmp_path / "run"
    done = icm_cli("label", "--task", "facts", "--argilla-dataset", dataset_name, "--question", "verdict",
                   "--field-map", MAP, "--model", str(tiny_model_dir), "--dtype", "float32", "--iterations", "12",
                   "--out", str(out), *server_args)
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunFolder.read(out)
    assert run.reliability is not None and run.model_checked == set(LABELS)
    records = _records(client, dataset_name)
    assert len(records) == 4
    assert {i: r.metadata["icm_against_model"] for i, r in records.items()} == {
        i: ("yes" if i in run.against_model else "no") for i in LABELS}
    assert all(r.metadata["against_model"] == "mine" for r in records.values())
    guidelines = find_dataset(client, dataset_name, "argilla").settings.guidelines
    assert guidelines.startswith(OWN_GUIDELINES) and guidelines.count(SECTION_HEADING) == 1
    verdict = "Verdict: flagged" if run.reliability["flag"] else "Verdict: not flagged"
    assert verdict in guidelines
    line = "WARNING: ICM flagged these suggestions" if run.reliability["flag"] else "reliability: not flagged by ICM"
    assert line in done.stdout
