"""`icm push`: a finished run into Argilla as suggestions to review, plus its flagged conflicts.

Record ids are the example ids (conflict records: a hash of rule + member ids), and Argilla's bulk upsert
matches on them, so pushing again updates the records in place: no duplicates, human responses kept, and an
interrupted push re-run ends with exactly one record per example. Every record (and both dataset names) is
built and checked before anything is sent. Review records go out in consistency-group order, so the examples
of one question sit next to each other in the UI.

After a re-push, ``NAME-conflicts`` describes the current run: a group the run no longer flags is deleted, or,
when reviewers already answered it, kept with its answers, marked "not flagged in the latest run" and shown
with ICM's current labels.

Each review record says whether the model itself prefers another label than ICM's (metadata `against_model`
yes/no, and `model_prefers`: that label), and the guidelines show the run's reliability verdict (a flagged run's
open with a warning). A dataset pushed by an older version gets the metadata properties it lacks (Argilla 2.8
adds metadata properties to a published dataset), and every push writes the guidelines of the run it sends.
Records of a run from before the reliability check carry neither value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import argilla as rg

from icm_plugin.core.examples import Groups, content_id
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.answers import other_ids
from icm_plugin.integrations.argilla.client import argilla_errors, find_dataset, workspace_name
from icm_plugin.integrations.argilla.schema import (
    CONFLICT_SUFFIX,
    MAX_NAME_LENGTH,
    QUESTION,
    RULE_TEXT,
    conflict_settings,
    label_values,
    missing_metadata,
    plain_text,
    prompt_fields,
    review_settings,
    schema_problems,
)

BATCH_SIZE = 200  # records per upsert (the SDK allows up to 500)
DELETE_BATCH_SIZE = 64  # records per delete (the SDK allows up to 100)
STALE_NOTE = "NOT FLAGGED IN THE LATEST RUN: kept because reviewers answered it; ICM's current labels are shown."


@dataclass(frozen=True)
class PushResult:
    dataset: str
    workspace: str
    records: int
    conflicts: int
    stale: int  # records in the dataset that this run does not have (kept: they may hold human answers)
    url: str  # the review dataset in the Argilla UI
    conflicts_url: str = ""
    conflicts_removed: int = 0  # groups the run no longer flags, deleted (nobody had answered them)
    conflicts_marked: int = 0  # such groups kept for their answers, marked and updated


def check_names(name: str) -> None:
    """Both dataset names a push creates must fit Argilla's limit. Raises ICMError before anything is written."""
    longest = name + CONFLICT_SUFFIX
    if not name.strip():
        raise ICMError("the Argilla dataset name is empty; pass --push NAME / --dataset NAME")
    if len(longest) > MAX_NAME_LENGTH:
        raise ICMError(f"dataset name {name[:40]!r}... is {len(name)} characters: with {CONFLICT_SUFFIX!r} "
                       f"({len(longest)}) it exceeds Argilla's {MAX_NAME_LENGTH}; use a name of at most "
                       f"{MAX_NAME_LENGTH - len(CONFLICT_SUFFIX)} characters")


def dataset_url(api_url: str, ds: rg.Dataset) -> str:
    """Where the dataset opens for annotation in the Argilla UI."""
    return f"{api_url.rstrip('/')}/dataset/{ds.id}/annotation-mode"


def log_records(ds: rg.Dataset, records: list[rg.Record]) -> None:
    """Upsert ``records`` in batches the SDK takes as given (it warns when it shrinks a batch)."""
    if records:
        ds.records.log(records, batch_size=min(BATCH_SIZE, len(records)))


def agent_name(model: str) -> str:
    return f"icm/{model}"


def review_records(run: RunFolder) -> list[rg.Record]:
    """One record per example: prompt fields, ICM's label as a Suggestion scored by its confidence."""
    values = label_values(run.task)
    fields = prompt_fields(run.task)
    flagged = run.flagged_ids
    with_key = run.task.key is not None
    records = []
    # group order (groups by first appearance, members in pool order): a question's claims side by side
    for ex in (run.examples[i] for ms in Groups(run.examples).members.values() for i in ms):
        metadata = {
            "consistency_group": _group(ex),
            "confidence": round(run.confidence[ex.id], 4),
            "in_flagged_pair": "yes" if ex.id in flagged else "no",
        }
        if with_key and ex.consistency_key is not None:
            metadata["consistency_key"] = ex.consistency_key
        metadata |= against_model_metadata(run, ex.id, values)
        record_fields = {}
        for f in fields:
            text = f.text(run.task, ex)
            if text is None or not str(text).strip():
                raise ICMError(f"{run.path / 'examples.jsonl'}: example {ex.id!r} has no {f.slot!r}, "
                               f"which the {run.task.name!r} prompt shows")
            record_fields[f.name] = plain_text(str(text))
        records.append(rg.Record(
            id=ex.id,
            fields=record_fields,
            metadata=metadata,
            suggestions=[rg.Suggestion(question_name=QUESTION, value=values[run.labels[ex.id]],
                                       score=round(run.confidence[ex.id], 4), agent=agent_name(run.model))],
        ))
    return records


def against_model_metadata(run: RunFolder, ex_id: str, values, prefix: str = "") -> dict[str, str]:
    """A record's reliability metadata: ``{prefix}against_model`` (yes/no) and, where the model prefers another
    label, ``{prefix}model_prefers`` (``values[label]``); nothing for a run from before the reliability check
    (unknown, so no value)."""
    if ex_id not in run.model_checked:
        return {}
    out = {prefix + "against_model": "yes" if ex_id in run.against_model else "no"}
    if run.against_model.get(ex_id) is not None:
        out[prefix + "model_prefers"] = values[run.against_model[ex_id]]
    return out


def _group(ex) -> str:
    return ex.consistency_id if ex.consistency_id is not None else ex.id


def _label_text(values: tuple[str, ...], label: int | None) -> str:
    return "unlabelled" if label is None else values[int(label)]


def conflict_records(run: RunFolder) -> list[rg.Record]:
    """One record per flagged group (repeats across iterations merged; the last resolution shown)."""
    values = label_values(run.task)
    by_id = {e.id: e for e in run.examples}
    merged: dict[tuple[str, tuple[str, ...]], tuple[dict, int]] = {}
    for c in run.conflicts:
        ids = tuple(str(i) for i in c.get("ids", []))
        if len(ids) < 2 or any(i not in by_id for i in ids):
            continue
        key = (str(c.get("rule", "")), tuple(sorted(ids)))
        merged[key] = (c, merged.get(key, (None, 0))[1] + 1)


    records = []
    for (rule, _), (c, times) in merged.items():
        ids = [str(i) for i in c["ids"]]
        group = by_id[ids[0]].consistency_id
        rule_text = RULE_TEXT.get(rule, rule)
        header = f"{rule_text}\nrule: {rule}" + (f"; group: {group}" if group else "")
        header = plain_text(header)
        header += f"\nflagged {times} time(s); last at iteration {c.get('iteration')}: {c.get('resolution')}"
        record_fields = {"rule": header, "example_1": describe_example(run, ids[0], c),
                         "example_2": describe_example(run, ids[1], c)}
        if len(ids) > 2:
            record_fields["others"] = "\n\n".join(describe_example(run, i, c) for i in ids[2:])
        records.append(rg.Record(
            id="conflict-" + content_id(rule, sorted(ids)),
            fields=record_fields,
            metadata={"rule_broken": rule, "resolution": str(c.get("resolution", "unresolved")), "times_flagged": times,
                      "example_1_id": ids[0], "example_2_id": ids[1]},
            suggestions=[
                rg.Suggestion(question_name=f"label_{n}", value=values[run.labels[i]],
                              score=round(run.confidence[i], 4), agent=agent_name(run.model))
                for n, i in ((1, ids[0]), (2, ids[1]))
            ],
        ))
    return records


def describe_example(run: RunFolder, ex_id: str, flagged: dict | None) -> str:
    """An example as a conflicts record shows it: id, prompt fields, ICM's labels (``flagged``: the conflict
    entry; None for a group the latest run did not flag)."""
    values = label_values(run.task)
    ex = next(e for e in run.examples if e.id == ex_id)
    lines = [f"id: {ex_id}"] + [f"{f.title}: {f.text(run.task, ex)}" for f in prompt_fields(run.task)]
    final = f"{values[run.labels[ex_id]]} (confidence {run.confidence[ex_id]:.2f})"
    if flagged is None:
        lines.append(f"not flagged in the latest run; ICM's label now: {final}")
    else:
        before = flagged.get("labels_before", {}).get(ex_id)
        after = flagged.get("labels_after", {}).get(ex_id)
        lines.append(f"ICM's label when flagged: {_label_text(values, before)}; after its fix: "
                     f"{_label_text(values, after)}; final: {final}")
    return plain_text("\n".join(lines))


def retire_stale_conflicts(cds: rg.Dataset, run: RunFolder, current: set[str]) -> tuple[int, int]:
    """Make NAME-conflicts describe ``run``: records not in ``current`` (ids this push sent) are deleted, or,
    when they hold responses, kept, marked STALE_NOTE and shown with the run's current labels and
    suggestions. Returns (deleted, marked)."""
    stale = [r for r in cds.records(with_responses=True, batch_size=500) if r.id not in current]
    unanswered = [r for r in stale if not r.responses.api_models()]
    answered = [r for r in stale if r.responses.api_models()]
    if unanswered:
        cds.records.delete(unanswered, batch_size=min(DELETE_BATCH_SIZE, len(unanswered)))
    log_records(cds, [_marked(r, run) for r in answered])
    return len(unanswered), len(answered)


def _marked(record: rg.Record, run: RunFolder) -> rg.Record:
    values = label_values(run.task)
    fields = dict(record.fields)
    if not str(fields.get("rule", "")).startswith(STALE_NOTE):
        fields["rule"] = STALE_NOTE + "\n\n" + str(fields.get("rule", ""))
    ids = [record.metadata.get("example_1_id"), record.metadata.get("example_2_id")]
    for n, ex_id in enumerate(ids, start=1):
        if ex_id in run.labels:
            fields[f"example_{n}"] = describe_example(run, ex_id, None)
    others = other_ids(str(fields.get("others") or ""))
    if others and all(i in run.labels for i in others):
        fields["others"] = "\n\n".join(describe_example(run, i, None) for i in others)
    suggestions = [rg.Suggestion(question_name=f"label_{n}", value=values[run.labels[i]],
                                 score=round(run.confidence[i], 4), agent=agent_name(run.model))
                   for n, i in enumerate(ids, start=1) if i in run.labels]
    return rg.Record(id=record.id, fields=fields, metadata={**record.metadata, "times_flagged": 0},
                     suggestions=suggestions)


def ensure_dataset(client: rg.Argilla, name: str, workspace: str, settings: rg.Settings) -> rg.Dataset:
    """The dataset ``name`` with ``settings``: created if missing, checked if it exists (ICMError if it does not fit)."""
    ds = find_dataset(client, name, workspace)
    if ds is not None and ds._model.status == "draft":  # the SDK has no public status attribute
        # a create that died before publishing: it holds no records
        ds.delete()
        ds = None
    if ds is None:
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
    problems = schema_problems(ds.settings, settings)
    if problems:
        raise ICMError(f"dataset {name!r} in workspace {workspace!r} exists but does not fit this task: "
                       f"{'; '.join(problems)}. Push to another --dataset name, or delete it in Argilla")
    update_settings(ds, settings)
    return ds


def update_settings(ds: rg.Dataset, wanted: rg.Settings) -> None:
    """Bring an existing dataset that fits ``wanted`` (``schema_problems`` is empty) up to it: add the metadata
    properties it lacks, e.g. `against_model` on a dataset pushed before the reliability check (Argilla 2.8 adds
    metadata properties to a published dataset and indexes them for filtering), and write ``wanted``'s
    guidelines, which describe the run being pushed. Fields, questions and records are left as they are."""
    missing = missing_metadata(ds.settings, wanted)
    if not missing and ds.settings.guidelines == wanted.guidelines:
        return
    for m in missing:
        ds.settings.metadata.add(m)
    ds.settings.guidelines = wanted.guidelines
    ds.update()


def push_run(client: rg.Argilla, run: RunFolder, name: str, workspace: str | None = None,
             echo: Callable[[str], None] = print) -> PushResult:
    """Create or update ``name`` (review) and ``name-conflicts``; returns counts and URLs. Raises ICMError."""
    url = client.api_url
    check_names(name)
    records = review_records(run)
    conflicts = conflict_records(run)
    review = review_settings(client, run.task, run.model, run.rule, name, run.reliability)
    flagged = conflict_settings(client, run.task, run.rule, name)
    with argilla_errors(url, f"pushing {run.path} to dataset {name!r}"):
        ws = workspace_name(client, workspace)
        # check both datasets before writing to either
        for ds_name, settings in ((name, review), (name + CONFLICT_SUFFIX, flagged)):
            existing = find_dataset(client, ds_name, ws)
            if existing is not None and existing._model.status != "draft":
                problems = schema_problems(existing.settings, settings)
                if problems:
                    raise ICMError(f"dataset {ds_name!r} in workspace {ws!r} exists but does not fit task "
                                   f"{run.task.name!r}: {'; '.join(problems)}. Push to another --dataset name, "
                                   "or delete it in Argilla")
        ds = ensure_dataset(client, name, ws, review)
        log_records(ds, records)
        echo(f"icm: pushed {len(records)} records to {name!r} (workspace {ws!r})")
        cds = ensure_dataset(client, name + CONFLICT_SUFFIX, ws, flagged)
        log_records(cds, conflicts)
        removed, marked = retire_stale_conflicts(cds, run, {r.id for r in conflicts})
        echo(f"icm: pushed {len(conflicts)} flagged group(s) to {name + CONFLICT_SUFFIX!r}"
             + (f"; {removed} group(s) this run no longer flags removed" if removed else "")
             + (f"; {marked} such group(s) kept for their answers and marked 'not flagged in the latest run'"
                if marked else ""))
        ours = {r.id for r in records}
        stale = sum(1 for r in ds.records(batch_size=500) if r.id not in ours)
    if stale:
        echo(f"icm: note: {stale} record(s) in {name!r} are not in this run (kept; they may hold answers)")
    return PushResult(name, ws, len(records), len(conflicts), stale, dataset_url(url, ds), dataset_url(url, cds),
                      removed, marked)
