"""Loaders: ICM-format .json / .jsonl files and Hugging Face datasets -> list[Example].

Every user mistake (missing field, bad label, bad line, duplicate id, empty pool) raises ICMError naming the
file, the record (and line) and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example, Groups, content_id, label_index, normalize_label
from icm_plugin.core.task_files import field_or_template, is_template
from icm_plugin.core.tasks import EXAMPLE_SLOTS, Task
from icm_plugin.errors import ICMError

FACTS_RESOURCE = "facts.jsonl"


def packaged_data_path(name: str = FACTS_RESOURCE) -> Path:
    """Path of a data file shipped inside the package (the facts claims)."""
    return Path(str(resources.files("icm_plugin").joinpath("data", name)))


def read_records(source: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (where, record) pairs from .json/.jsonl or a dataset; ``where`` names the record for errors."""
    path = Path(source)
    if path.is_file() and path.suffix == ".jsonl":
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                line = _utf8(raw, path, lineno)
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ICMError(f"{path}: line {lineno}: not valid JSON ({err.msg}); fix or remove that line") from None
                if not isinstance(record, dict):
                    raise ICMError(f"{path}: line {lineno}: expected a JSON object, got {type(record).__name__}")
                yield f"{path}: line {lineno}", record
    elif path.is_file() and path.suffix == ".json":
        raw = path.read_bytes()
        try:
            data = json.loads(_utf8(raw, path))
        except json.JSONDecodeError as err:
            raise ICMError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from None
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            data = data["data"]
        if not isinstance(data, list):
            raise ICMError(f"{path}: expected a JSON list of records (ICM format), got {type(data).__name__}")
        for n, record in enumerate(data):
            if not isinstance(record, dict):
                raise ICMError(f"{path}: record {n}: expected a JSON object, got {type(record).__name__}")
            yield f"{path}: record {n}", record
    elif path.is_file():
        raise ICMError(f"{path}: unsupported file type {path.suffix!r}; use .json (a list) or .jsonl")
    else:
        yield from _read_hf(str(source))


def _utf8(raw: bytes, path: Path, lineno: int | None = None) -> str:
    """``raw`` decoded as UTF-8; ICMError naming the file, line and byte otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = lineno if lineno is not None else raw.count(b"\n", 0, err.start) + 1
        raise ICMError(f"{path}: line {line}: not UTF-8 text (byte {raw[err.start]:#04x}); save the file as "
                       "UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


def _read_hf(name: str, split: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """A Hugging Face dataset: a local ``save_to_disk`` folder, a local data folder, or a hub name."""
    import datasets

    if "::" in name:
        name, split = name.split("::", 1)
    path = Path(name)
    try:
        if path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
            ds = datasets.load_from_disk(str(path))
        else:
            ds = datasets.load_dataset(name)
    except FileNotFoundError as err:
        raise ICMError(f"{name}: no such file, folder or dataset ({err})") from None
    except Exception as err:  # hub offline, bad repo id, ...
        raise ICMError(f"{name}: could not load as a Hugging Face dataset: {err}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            split = "train" if "train" in ds else sorted(ds)[0]
        if split not in ds:
            raise ICMError(f"{name}: no split {split!r}; it has {sorted(ds)}")
        ds = ds[split]
    for n, record in enumerate(ds):
        yield f"{name}: record {n}", dict(record)


def _field(where: str, record: dict[str, Any], key: str, required: bool) -> Any:
    value = record.get(key)
    if value is None:
        if required:
            raise ICMError(f"{where}: missing field {key!r}")
        return None
    if not isinstance(value, str | int | float):
        raise ICMError(f"{where}: field {key!r} must be text or a number, got {type(value).__name__}")
    return str(value)


def _derived(where: str, record: dict[str, Any], spec: str | None, task: Task, setting: str) -> str | None:
    """``consistency_id`` / ``consistency_key`` from the task file's ``metadata.icm.group`` / ``key``: a record
    field (missing: None) or a Jinja template over the record (empty: None)."""
    if spec is None:
        return None
    if not is_template(spec):
        value = _field(where, record, spec, required=False)
        return None if value is None else (value.strip() if setting == "key" else value)
    try:
        value = field_or_template(spec, record)
    except Exception as err:  # a template over a field the record lacks, or a bad filter
        raise ICMError(f"{where}: metadata.icm.{setting} of {task.source or task.name} cannot be rendered "
                       f"for this record ({type(err).__name__}: {err})") from None
    return str(value).strip() or None


def _gold(where: str, record: dict[str, Any], task: Task) -> int | None:
    """The gold label (an index into the task's labels) from ``doc_to_target``, or None where it is absent."""
    target = task.target
    if target is None:
        return None
    if isinstance(target, int):
        value: Any = target
    elif is_template(target):
        try:
            value = field_or_template(target, record)
        except Exception:  # noqa: BLE001 - a target template over absent fields: no gold for this record
            return None
    else:
        value = record.get(target)
    if value is None:
        return None
    try:
        return label_index(value, task.choices)
    except ValueError as err:
        name = target if isinstance(target, str) and not is_template(target) else "doc_to_target"
        raise ICMError(f"{where}: field {name!r}: {err}") from None


def examples_from_records(records: Iterable[tuple[str, dict[str, Any]]], task: Task, source: str) -> list[Example]:
    """Map raw records onto Examples: the task's template variables (``fields`` maps a variable to another
    record field), its group and key, gold from ``doc_to_target``; validate; derive stable ids."""
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for where, record in records:
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for var in task.variables:
            key = task.fields.get(var, var)
            value = _field(where, record, key, required=True)
            if var in EXAMPLE_SLOTS:
                values[var] = value
            else:
                extra[var] = value
        values["consistency_id"] = _derived(where, record, task.group, task, "group")
        values["consistency_key"] = _derived(where, record, task.key, task, "key")
        label = _gold(where, record, task)
        if record.get("id") is not None:
            ex_id = str(record["id"])
        else:
            parts = [values.get("question"), values.get("choice"), values.get("choice_2"), values.get("consistency_id")]
            ex_id = content_id(*parts, *([extra] if extra else []))
        if ex_id in seen:
            raise ICMError(f"{where}: duplicate id {ex_id!r} (also at {seen[ex_id]}); ids must be unique")
        seen[ex_id] = where
        examples.append(Example(id=ex_id, label=label, fields=extra, **values))
    if not examples:
        raise ICMError(f"{source}: no records: the pool is empty")
    return examples


def load_examples(source: str | Path | None, task: Task, limit: int | None = None) -> list[Example]:
    """Load a pool for ``task`` from a file, a folder or a dataset name (default: the packaged facts).

    ``limit`` keeps whole consistency groups, chosen by a hash of the group id (stable, order-free), until
    at least ``limit`` examples are kept... never splitting a group.
    """
    if source is None and task.config.get("dataset_path") and task.name != "facts":
        records: Iterable[tuple[str, dict[str, Any]]] = task_dataset_records(task)
        source = f"{task.source}: dataset {task.config['dataset_path']}"
    else:
        if source is None:
            if task.name != "facts":
                raise ICMError(f"task {task.name!r} has no data of its own: pass --data FILE_OR_DATASET (or give "
                               "the task file dataset_path / dataset_kwargs, as for lm-eval)")
            source = packaged_data_path()
        records = read_records(source)
    examples = examples_from_records(records, task, str(source))
    if limit is not None:
        examples = limit_pool(examples, limit)
    return examples


SPLIT_KEYS = ("test_split", "validation_split", "training_split")


def task_dataset_records(task: Task) -> Iterator[tuple[str, dict[str, Any]]]:
    """The records of a task file's own dataset (``dataset_path``, ``dataset_name``, ``dataset_kwargs``; the
    first of ``test_split``, ``validation_split``, ``training_split``), loaded by ``datasets`` as lm-eval loads
    it. Raises ICMError naming the task file when it cannot be loaded."""
    import datasets

    cfg = task.config
    split = next((cfg[k] for k in SPLIT_KEYS if cfg.get(k)), None)
    kwargs = dict(cfg.get("dataset_kwargs") or {})
    path = str(cfg["dataset_path"])
    try:
        ds = datasets.load_dataset(path, cfg.get("dataset_name"), **kwargs)
    except Exception as err:  # a missing local file, the hub offline, a bad name: one line for the user
        raise ICMError(f"{task.source}: dataset_path {path!r} could not be loaded ({type(err).__name__}: "
                       f"{str(err)[:300]}); pass --data FILE instead") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None or split not in ds:
            raise ICMError(f"{task.source}: the dataset has splits {sorted(ds)}; name one with test_split")
        ds = ds[split]
    for n, record in enumerate(ds):
        yield f"{path} ({split}): record {n}", dict(record)


def limit_pool(examples: list[Example], limit: int) -> list[Example]:
    """Keep at most ``limit`` examples, whole groups only, groups picked in a stable hashed order."""
    if limit <= 0:
        raise ICMError(f"--limit must be positive, got {limit}")
    groups = Groups(examples).members
    order = sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    kept: list[Example] = []
    for g in order:
        if len(kept) + len(groups[g]) > limit and kept:
            continue
        kept.extend(examples[i] for i in groups[g])
        if len(kept) >= limit:
            break
    keep_ids = {e.id for e in kept}
    return [e for e in examples if e.id in keep_ids]


_read_records = read_records  # the old private name, kept for callers that still use it


def read_label_file(path: str | Path) -> dict[str, int]:
    """A labels file: jsonl lines with ``id`` and ``label`` (0/1, bool or "True"/"False") -> {id: label}.

    Reads ``icm pull`` output, ``--clamp`` files and ``labels.jsonl``; raises ICMError naming the line and field.
    """
    p = Path(path)
    if not p.exists():
        raise ICMError(f"{p}: labels file not found")
    out: dict[str, int] = {}
    seen: dict[str, str] = {}
    for where, row in read_records(p):
        for key in ("id", "label"):
            if key not in row:
                raise ICMError(f"{where}: missing field {key!r}")
        try:
            label = normalize_label(row["label"])
        except ValueError as err:
            raise ICMError(f"{where}: field 'label': {err}") from None
        ex_id = str(row["id"])
        if ex_id in out and out[ex_id] != label:
            raise ICMError(f"{where}: id {ex_id!r} has label {label} here and {out[ex_id]} at {seen[ex_id]}; "
                           "keep one line per id")
        out[ex_id], seen[ex_id] = label, where
    return out
