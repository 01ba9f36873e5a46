"""Where each ``icm_*`` task's examples come from: local ICM-format files, the public hub datasets, or the package.

Order: a data folder (``data_dir`` metadata, else the ``ICM_DATA_DIR`` environment variable) holding the task's
file; else ``icm_facts`` reads the claims shipped in the package; else the public dataset on the Hugging Face hub,
downloaded by ``datasets`` and converted to the ICM format here. GSM8K-verification has no public copy (its
claims are model-written solutions with correctness labels), so ``icm_gsm8k`` needs a data folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.loaders import examples_from_records, packaged_data_path, read_records
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError

log = logging.getLogger(__name__)
DATA_DIR_ENV = "ICM_DATA_DIR"
LMEVAL_TASKS = ("truthfulqa", "gsm8k", "alpaca", "facts")
_FIX = (
    "pass local ICM-format files with --metadata '{{\"data_dir\": \"DIR\"}}' or the environment variable "
    f"{DATA_DIR_ENV}=DIR, where DIR holds {{names}}"
)


def local_names(task: str) -> tuple[str, ...]:
    """File names looked up in a data folder for ``task``, first match wins."""
    return (f"{task}.jsonl", f"{task}.json", f"test_{task}.jsonl", f"test_{task}.json")


def _names_text(task: str) -> str:
    return " or ".join(local_names(task))


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """The data folder to read: the argument, else ``$ICM_DATA_DIR``, else None. Raises ICMError if it is missing."""
    value = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if value is None:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        source = "data_dir" if data_dir not in (None, "") else DATA_DIR_ENV
        raise ICMError(f"{source}={str(value)!r}: no such folder; point it at a folder of ICM-format .json/.jsonl files")
    return folder


def local_file(task: str, folder: Path) -> Path | None:
    for name in local_names(task):
        if (folder / name).is_file():
            return folder / name
    return None


# ---- public hub datasets -> ICM-format records ------------------------------------------------------------


def _group_id(*parts: str) -> str:
    # stable across downloads and row order: a hash of the group's own text
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:12]


def truthfulqa_records(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """TruthfulQA ``generation`` rows -> one claim per reference answer: correct answers True, incorrect False.

    A question is a consistency group. An answer listed as both correct and incorrect is dropped (no honest label).
    """
    for n, row in enumerate(rows):
        question = str(row["question"]).strip()
        correct = [str(a).strip() for a in row.get("correct_answers") or []]
        incorrect = [str(a).strip() for a in row.get("incorrect_answers") or []]
        ambiguous = set(correct) & set(incorrect)
        group = _group_id(question)
        seen: set[str] = set()
        for label, answers in ((1, correct), (0, incorrect)):
            for answer in answers:
                if not answer or answer in ambiguous or answer in seen:
                    continue
                seen.add(answer)
                yield (f"truthfulqa row {n}",
                       {"question": question, "choice": answer, "label": label, "consistency_id": group})


def alpaca_records(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """AlpacaFarm human preferences -> each pair in both orders (the paper's format); the pair is the group.

    ``preference`` is 1 or 2 (the preferred output); rows with any other value are skipped.
    """
    for n, row in enumerate(rows):
        if row.get("preference") not in (1, 2):
            continue
        instruction, extra = str(row["instruction"]).strip(), str(row.get("input") or "").strip()
        question = f"{instruction}\n\n{extra}" if extra else instruction
        out1, out2 = str(row["output_1"]), str(row["output_2"])
        group = _group_id(question, out1, out2)
        first_better = row["preference"] == 1
        where = f"alpaca_farm row {n}"
        yield where, {"question": question, "choice": out1, "choice_2": out2, "label": int(first_better),
                      "consistency_id": group}
        yield where, {"question": question, "choice": out2, "choice_2": out1, "label": int(not first_better),
                      "consistency_id": group}


@dataclass(frozen=True)
class HubSource:
    """A public dataset and the converter that turns its rows into ICM-format records."""

    path: str
    name: str | None
    split: str
    convert: Any
    data_files: str | None = None

    def describe(self) -> str:
        return self.data_files or f"{self.path}" + (f" ({self.name})" if self.name else "")


HUB_SOURCES: dict[str, HubSource] = {
    "truthfulqa": HubSource("truthfulqa/truthful_qa", "generation", "validation", truthfulqa_records),
    # the repository's loading script is not supported by datasets>=4; its JSON file is read directly
    "alpaca": HubSource("json", None, "train", alpaca_records,
                        data_files="hf://datasets/tatsu-lab/alpaca_farm/alpaca_human_preference.json"),
}


def _hub_rows(task: str, source: HubSource) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(source.path, source.name, split=source.split, data_files=source.data_files)
    except Exception as err:  # offline, hub down, renamed repo: all end the same way for the user
        raise ICMError(
            f"icm_{task}: could not load the public dataset {source.describe()} from the Hugging Face hub "
            f"({type(err).__name__}: {str(err)[:300]}). Offline? " + _FIX.format(names=_names_text(task))
        ) from None
    return [dict(r) for r in ds]


# ---- the one entry point ------------------------------------------------------------------------------------


def task_records(task: str, data_dir: str | os.PathLike | None = None) -> tuple[list[tuple[str, dict[str, Any]]], str]:
    """The raw ICM-format records of an ``icm_*`` task and a description of their source (file or dataset).

    Raises ICMError when the data folder lacks the task's file, when the hub cannot be reached, and when a task
    has no public source (gsm8k) and no folder was given.
    """
    folder = resolve_data_dir(data_dir)
    if task not in LMEVAL_TASKS:  # icm_claims, icm_comparisons: generic tasks with no data of their own
        path = local_file(task, folder) if folder is not None else None
        if path is None:
            raise ICMError(f"icm_{task} reads your own records: pass --metadata '{{\"data\": \"FILE.jsonl\"}}' "
                           f"(or a data_dir holding {_names_text(task)}); the tasks with data of their own are "
                           f"{', '.join('icm_' + t for t in LMEVAL_TASKS)}")
        return list(read_records(path)), str(path)
    path = local_file(task, folder) if folder is not None else None
    if folder is not None and path is None and task != "facts":
        raise ICMError(f"{folder}: no {_names_text(task)} for icm_{task}; add the file (ICM format) or "
                       "drop data_dir to use the public dataset")
    if path is None and task == "facts":
        path = packaged_data_path()
        if folder is not None:  # a group run's data_dir often lacks facts: fine, but never silently
            log.warning("icm_facts: %s has no %s; reading the claims packaged with icm-plugin (%s)", folder,
                        _names_text(task), path)
    if path is not None:
        return list(read_records(path)), str(path)
    if task not in HUB_SOURCES:
        raise ICMError(
            f"icm_{task}: there is no public copy of the ICM paper's GSM8K-verification claims (model-written "
            "solutions labelled correct/incorrect) to download; " + _FIX.format(names=_names_text(task))
        )
    source = HUB_SOURCES[task]
    return list(source.convert(_hub_rows(task, source))), source.describe()


def load_task_examples(task: str, data_dir: str | os.PathLike | None = None) -> list[Example]:
    """All examples of an ``icm_*`` task (pool and test together, gold labels kept), in the ICM format.

    Raises ICMError as :func:`task_records` does, and for any malformed record (naming file, record and field).
    """
    records, source = task_records(task, data_dir)
    return examples_from_records(records, get_task(task), source)
