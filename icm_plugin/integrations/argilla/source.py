"""An existing Argilla dataset as ICM's pool (`icm label --argilla-dataset`), and ICM's labels written back
onto the same records as suggestions for one of its LabelQuestions.

Record ids become example ids, so the write-back finds each record again. Fields map onto the task's prompt
slots by name (a field called like the slot or like its caption in the prompt) or by ``--field-map``
``question=FIELD,choice=FIELD,...``; ``consistency_id``/``consistency_key`` may also come from metadata
(``consistency_id=metadata.NAME``).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import argilla as rg

from icm_plugin.core.examples import Example
from icm_plugin.core.loaders import examples_from_records
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.answers import label_map, label_question
from icm_plugin.integrations.argilla.client import argilla_errors, find_dataset, workspace_name
from icm_plugin.integrations.argilla.review import agent_name, log_records
from icm_plugin.integrations.argilla.schema import prompt_fields

TARGETS = ("question", "choice", "choice_2", "consistency_id", "consistency_key")
# metadata names looked up for the optional consistency slots when no --field-map names them
DEFAULT_METADATA = {"consistency_id": ("consistency_id", "consistency_group"), "consistency_key": ("consistency_key",)}


def parse_field_map(text: str | None) -> dict[str, str]:
    """``question=FIELD,choice=FIELD`` -> dict. Raises ICMError for a malformed item or an unknown slot."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        slot, sep, source = item.partition("=")
        slot, source = slot.strip(), source.strip()
        if not sep or not source:
            raise ICMError(f"--field-map item {item!r} is not SLOT=FIELD (e.g. question=prompt,choice=answer)")
        if slot not in TARGETS:
            raise ICMError(f"--field-map: unknown slot {slot!r}; slots are {', '.join(TARGETS)}")
        out[slot] = source
    return out


def resolve_mapping(task: Task, settings: rg.Settings, field_map: dict[str, str], dataset: str) -> dict[str, str]:
    """slot -> 'FIELD' or 'metadata.NAME' for this dataset. ICMError when a slot the prompt needs has no source."""
    fields = [f.name for f in settings.fields]
    metadata = [m.name for m in settings.metadata]
    mapping: dict[str, str] = {}
    for slot, source in field_map.items():
        if source.startswith("metadata."):
            if settings.metadata and source.split(".", 1)[1] not in metadata and not settings.allow_extra_metadata:
                raise ICMError(f"--field-map {slot}={source}: dataset {dataset!r} has no metadata "
                               f"{source.split('.', 1)[1]!r} (it has: {', '.join(metadata) or 'none'})")
        elif source not in fields:
            raise ICMError(f"--field-map {slot}={source}: dataset {dataset!r} has no field {source!r} "
                           f"(its fields: {', '.join(fields)})")
        mapping[slot] = source
    captions = {f.slot: f.name for f in prompt_fields(task)}
    for slot in task.variables:
        if slot in mapping:
            continue
        for candidate in (slot, task.fields.get(slot), captions.get(slot)):
            if candidate in fields:
                mapping[slot] = candidate
                break
        else:
            raise ICMError(f"dataset {dataset!r} does not fit task {task.name!r}: no field for the prompt's "
                           f"{slot!r} (its fields: {', '.join(fields)}); pass --field-map {slot}=FIELD")
    for slot, names in DEFAULT_METADATA.items():
        if slot not in mapping:
            for name in names:
                if name in fields:
                    mapping[slot] = name
                    break
                if name in metadata:
                    mapping[slot] = "metadata." + name
                    break
    return mapping


def _value(record: rg.Record, source: str) -> Any:
    if source.startswith("metadata."):
        return record.metadata.get(source.split(".", 1)[1])
    return record.fields.get(source)


def record_id(record: rg.Record) -> str:
    return str(record.id) if record.id is not None else str(record._server_id)


def examples_from_dataset(client: rg.Argilla, name: str, workspace: str | None, task: Task,
                          field_map: dict[str, str], question: str | None, true_label: str | None = None,
                          ) -> list[Example]:
    """The dataset's records as Examples (ids = record ids). Checks the question too, before any labelling."""
    with argilla_errors(client.api_url, f"reading dataset {name!r}"):
        ds = _dataset(client, name, workspace)
        if question is not None:
            label_map(label_question(ds, question), name, true_label)
        mapping = resolve_mapping(task, ds.settings, field_map, name)
        rows = []
        for record in ds.records(batch_size=500):
            raw = dict(record.fields)  # all fields: a task's key may read one the prompt does not show
            raw.pop("label", None)  # never a gold label: ICM labels without them
            for slot, source in mapping.items():
                raw[slot] = _value(record, source)
            raw["id"] = record_id(record)
            rows.append((f"Argilla dataset {name!r}: record {raw['id']}", raw))
    # slots are already named as the template's variables: read them as they are
    by_slot = replace(task, fields={}, group="consistency_id",
                      key="consistency_key" if "consistency_key" in mapping else task.key)
    return examples_from_records(rows, by_slot, f"Argilla dataset {name!r}")


def task_from_dataset(client: rg.Argilla, name: str, workspace: str | None, question: str) -> Task:
    """A task built from the dataset's own settings: its text fields in order, each under its title, as the
    prompt, the question's title as the prompt's last line, the question's labels as the labels (any number).
    Rule none: nothing in an Argilla dataset says which records constrain each other. Raises ICMError."""
    with argilla_errors(client.api_url, f"reading dataset {name!r}"):
        ds = _dataset(client, name, workspace)
        q = label_question(ds, question)
        fields = [f for f in ds.settings.fields if isinstance(f, rg.TextField)]
    if not fields:
        raise ICMError(f"dataset {name!r} has no text field to show the model; ICM reads TextFields")
    variables = {f.name: _variable(f.name, n) for n, f in enumerate(fields)}
    lines = [f"{(f.title or f.name).strip()}: {{{{{variables[f.name]}}}}}" for f in fields]
    template = "\n".join([*lines, (q.title or q.name).strip()])
    choices = tuple(str(v) for v in q.labels)
    task_name = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "argilla_task"
    config = {"task": task_name, "output_type": "multiple_choice", "doc_to_text": template,
              "doc_to_choice": list(choices), "metadata": {"version": 1.0}}
    return Task(name=task_name, template=template, choices=choices, rule="none",
                fields={v: f for f, v in variables.items() if v != f}, group=None, key=None,
                true_index=1 if len(choices) == 2 else None, target=None,
                description=f"Argilla dataset {name!r}, question {question!r}", source=f"argilla:{name}",
                config=config)


def _variable(field_name: str, n: int) -> str:
    """A Jinja2 variable name for an Argilla field (its name when that is an identifier)."""
    name = re.sub(r"\W+", "_", field_name)
    return name if name.isidentifier() and not keyword.iskeyword(name) else f"field_{n}"


def examples_from_own_fields(client: rg.Argilla, name: str, workspace: str | None, task: Task) -> list[Example]:
    """The dataset's records as Examples of ``task_from_dataset``'s task (an optional field left empty reads as
    empty text)."""
    with argilla_errors(client.api_url, f"reading dataset {name!r}"):
        ds = _dataset(client, name, workspace)
        rows = []
        for record in ds.records(batch_size=500):
            raw = {k: ("" if v is None else v) for k, v in dict(record.fields).items()}
            for var in task.variables:
                raw.setdefault(task.fields.get(var, var), "")
            raw["id"] = record_id(record)
            rows.append((f"Argilla dataset {name!r}: record {raw['id']}", raw))
    return examples_from_records(rows, task, f"Argilla dataset {name!r}")


def _dataset(client: rg.Argilla, name: str, workspace: str | None) -> rg.Dataset:
    ws = workspace_name(client, workspace)
    ds = find_dataset(client, name, ws)
    if ds is None:
        names = [d.name for d in client.workspaces(name=ws).datasets]
        raise ICMError(f"no dataset {name!r} in workspace {ws!r} (it has: {', '.join(names) or 'none'})")
    return ds


def write_suggestions(client: rg.Argilla, run: RunFolder, name: str, workspace: str | None, question: str,
                      true_label: str | None = None, echo: Callable[[str], None] = print) -> int:
    """Add ICM's label for ``question`` as a Suggestion (score = confidence) on each record of the run.

    Fields and metadata are sent back unchanged (Argilla's upsert replaces metadata it is sent); responses,
    vectors and other questions' suggestions are left as they are. Returns the number of records updated.
    """
    with argilla_errors(client.api_url, f"writing suggestions to dataset {name!r}"):
        ds = _dataset(client, name, workspace)
        q = label_question(ds, question)
        if list(run.task.choices) == [str(v) for v in q.labels]:  # the run's labels are the question's own
            values = dict(enumerate(run.task.choices))
        else:
            values = {y: v for v, y in label_map(q, name, true_label).items()}
        updated = []
        for record in ds.records(batch_size=500):
            rid = record_id(record)
            if rid not in run.labels:
                continue
            updated.append(rg.Record(
                id=record.id,
                _server_id=record._server_id,
                fields=dict(record.fields),
                metadata=dict(record.metadata),
                suggestions=[rg.Suggestion(question_name=question, value=values[run.labels[rid]],
                                           score=round(run.confidence[rid], 4), agent=agent_name(run.model))],
            ))
        log_records(ds, updated)
    missing = len(run.labels) - len(updated)
    echo(f"icm: wrote {len(updated)} suggestion(s) for {question!r} onto {name!r}"
         + (f" ({missing} labelled example(s) no longer in the dataset)" if missing else ""))
    return len(updated)
