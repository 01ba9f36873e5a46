"""An existing Argilla dataset as ICM's pool (`icm label --argilla-dataset`), and ICM's labels written back
onto the same records as suggestions for one of its LabelQuestions.

Record ids become example ids, so the write-back finds each record again. Fields map onto the task's prompt
slots by name (a field called like the slot or like its caption in the prompt) or by ``--field-map``
``question=FIELD,choice=FIELD,...``; ``consistency_id``/``consistency_key`` may also come from metadata
(``consistency_id=metadata.NAME``).

The write-back also carries the run's reliability verdict onto the user's dataset (never touching its fields, its
other metadata or the rest of its guidelines): each record the run checked gets the metadata `icm_against_model`
(yes/no: the model itself prefers another label than ICM's) and `icm_model_prefers` (that label), properties the
dataset gets when it lacks them; the guidelines end with an "ICM reliability" section (``reliability_section``)
that each run replaces in place, found by its heading and end lines; and the verdict is printed. The names carry
the ``icm_`` prefix because the dataset is the user's and may have an `against_model` of its own. A run from
before the reliability check writes its suggestions, no values and no verdict.
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
from icm_plugin.integrations.argilla.review import (
    against_model_metadata,
    agent_name,
    log_records,
    update_settings,
)
from icm_plugin.integrations.argilla.schema import (
    metadata_problems,
    plain_text,
    prompt_fields,
    reliability_metadata,
    reliability_section,
)

TARGETS = ("question", "choice", "choice_2", "consistency_id", "consistency_key")
# metadata names looked up for the optional consistency slots when no --field-map names them
DEFAULT_METADATA = {"consistency_id": ("consistency_id", "consistency_group"), "consistency_key": ("consistency_key",)}
# the record metadata the write-back adds (prefixed: the dataset is the user's and may have an `against_model`)
METADATA_PREFIX = "icm_"
AGAINST_MODEL, MODEL_PREFERS = METADATA_PREFIX + "against_model", METADATA_PREFIX + "model_prefers"
METADATA_TITLES = ("ICM: model prefers another label", "ICM: label the model prefers")
# the lines that open and close the section ICM writes at the end of the user's guidelines (a re-run replaces it)
SECTION_HEADING = "## ICM reliability"
SECTION_END = ("*End of the ICM reliability section: each `icm label --argilla-dataset` run rewrites it, from its "
               "heading to this line, and leaves the rest of the guidelines as they are.*")
GUIDELINES_MAX_LENGTH = 10_000  # Argilla 2.8 refuses longer guidelines
_HEADING_LINE = re.compile(r"^" + re.escape(SECTION_HEADING) + r"[ \t]*$", re.MULTILINE)


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


def icm_section(run: RunFolder, question: str) -> str:
    """The "ICM reliability" section for the user's guidelines: ``reliability_section`` under ``SECTION_HEADING``
    with the prefixed metadata names, the run's agent, and ``SECTION_END``."""
    q = plain_text(question)
    body = reliability_section(run.reliability, run.task.k, heading=SECTION_HEADING, metadata_prefix=METADATA_PREFIX,
                               sort_by=f"*Suggestion score* of `{q}`")
    return (body + f"\nICM's labels are the suggestions for `{q}` by agent `{plain_text(agent_name(run.model))}`."
            + "\n\n" + SECTION_END + "\n")


def with_section(guidelines: str | None, section: str, append: bool = True) -> str | None:
    """``guidelines`` with ``section`` in place of the one an earlier run wrote (from its ``SECTION_HEADING``
    line to its ``SECTION_END`` line, or to the end of the text if that line was deleted), else at the end
    (``append`` False: left as they are). The text around the section is kept as it is."""
    text = guidelines or ""
    start = _HEADING_LINE.search(text)
    if start is None:
        if not append:
            return guidelines
        sep = "" if not text or text.endswith("\n\n") else "\n" if text.endswith("\n") else "\n\n"
        return text + sep + section
    end = text.find(SECTION_END, start.end())
    stop = len(text) if end < 0 else end + len(SECTION_END)
    if text[stop:stop + 1] == "\n":
        stop += 1
    return text[:start.start()] + section + text[stop:]


def write_suggestions(client: rg.Argilla, run: RunFolder, name: str, workspace: str | None, question: str,
                      true_label: str | None = None, echo: Callable[[str], None] = print) -> int:
    """Add ICM's label for ``question`` as a Suggestion (score = confidence) on each record of the run, and the
    run's reliability verdict (see the module's docstring): `icm_against_model`/`icm_model_prefers` on each
    record the run checked, an "ICM reliability" section at the end of the guidelines, a line printed.

    Fields are sent back unchanged and metadata with the ``icm_`` values merged in (Argilla's upsert replaces
    metadata it is sent; values an earlier run left are replaced or dropped); responses, vectors and other
    questions' suggestions are left as they are. Returns the number of records updated.
    """
    reliability = run.reliability
    note = ""
    with argilla_errors(client.api_url, f"writing suggestions to dataset {name!r}"):
        ds = _dataset(client, name, workspace)
        q = label_question(ds, question)
        if list(run.task.choices) == [str(v) for v in q.labels]:  # the run's labels are the question's own
            values = dict(enumerate(run.task.choices))
        else:
            values = {y: v for v, y in label_map(q, name, true_label).items()}
        if run.model_checked:  # the properties first: a record's metadata must have one (unless extra is allowed)
            wanted = rg.Settings(guidelines=ds.settings.guidelines,
                                 metadata=reliability_metadata(client, [str(v) for v in q.labels], METADATA_PREFIX,
                                                               METADATA_TITLES))
            problems = metadata_problems(ds.settings, wanted)
            if problems:
                raise ICMError(f"dataset {name!r} cannot take ICM's reliability metadata: {'; '.join(problems)}. "
                               "Rename or delete those metadata properties in Argilla")
            update_settings(ds, wanted)  # adds the ones it lacks; the guidelines stay as they are
        updated, against = [], 0
        for record in ds.records(batch_size=500):
            rid = record_id(record)
            if rid not in run.labels:
                continue
            metadata = {k: v for k, v in dict(record.metadata).items() if k not in (AGAINST_MODEL, MODEL_PREFERS)}
            metadata |= against_model_metadata(run, rid, values, METADATA_PREFIX)
            against += metadata.get(AGAINST_MODEL) == "yes"
            updated.append(rg.Record(
                id=record.id,
                _server_id=record._server_id,
                fields=dict(record.fields),
                metadata=metadata,
                suggestions=[rg.Suggestion(question_name=question, value=values[run.labels[rid]],
                                           score=round(run.confidence[rid], 4), agent=agent_name(run.model))],
            ))
        log_records(ds, updated)
        # after the records: the guidelines describe the suggestions that are there
        guidelines = with_section(ds.settings.guidelines, icm_section(run, question), append=reliability is not None)
        if guidelines is not None and len(guidelines) > GUIDELINES_MAX_LENGTH:
            note = (f"; the guidelines were left as they are: with the section they would exceed Argilla's "
                    f"{GUIDELINES_MAX_LENGTH} characters")
        elif guidelines != ds.settings.guidelines:
            update_settings(ds, rg.Settings(guidelines=guidelines))
    missing = len(run.labels) - len(updated)
    echo(f"icm: wrote {len(updated)} suggestion(s) for {question!r} onto {name!r}"
         + (f" ({missing} labelled example(s) no longer in the dataset)" if missing else ""))
    if reliability is not None:
        where = (f"{against} record(s) have {AGAINST_MODEL} = yes (the model itself prefers the label in "
                 f"{MODEL_PREFERS}); see the 'ICM reliability' section of {name!r}'s guidelines" + note)
        if reliability.get("flag"):
            reasons = "; ".join(str(r) for r in reliability.get("reasons") or []) or "no reason given"
            echo(f"icm: WARNING: ICM flagged these suggestions as unreliable: {reasons}. {where}")
        else:
            echo(f"icm: reliability: not flagged by ICM's gold-free checks; {where}")
    return len(updated)
