"""The lm-eval pool/test split as a label job's pool: ``SplitPool`` (`icm label --split`), and the records of an
``icm_<task>`` task's data."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.method.job import LabelHook, LabelJob

SPLITS = ("pool", "test", "all")


def split_examples(examples: list[Example], split: str) -> list[Example]:
    """The ``pool`` or ``test`` side of ``split_pool`` (``all``: unchanged)."""
    from icm_plugin.integrations.lmeval.split import split_pool

    if split == "all":
        return examples
    pool, test = split_pool(examples)
    chosen = pool if split == "pool" else test
    if not chosen:
        raise ICMError(f"the {split} side of the split is empty ({len(examples)} examples is too few to split)")
    return chosen


def task_records(task: Task, data: str | None, data_dir: str | None = None) -> list[tuple[dict[str, Any], Example]]:
    """(raw record, Example) pairs from an explicit ``--data`` file, else from a task file's own dataset keys,
    else from the ``icm_<task>`` lm-eval data."""
    from icm_plugin.core.loaders import examples_from_records, task_dataset_records
    from icm_plugin.integrations.lmeval import sources

    if data:
        records, source = list(sources.read_records(data)), data
    elif task.config.get("dataset_path") and task.name not in sources.LMEVAL_TASKS:
        records, source = list(task_dataset_records(task)), task.source
    else:
        records, source = sources.task_records(task.name, data_dir)
    examples = examples_from_records(records, task, source)
    return [(record, ex) for (_, record), ex in zip(records, examples, strict=True)]


def task_examples(task: Task, data: str | None, data_dir: str | None = None) -> list[Example]:
    """An explicit ``--data`` source, else the same source the ``icm_<task>`` lm-eval task reads."""
    return [ex for _, ex in task_records(task, data, data_dir)]


TEST_SPLIT_WARNING = (
    "icm: warning: --split test labels the held-out test split of the icm_{task} lm-eval task: lm-eval will refuse "
    "these labels as demonstrations (--metadata '{{\"labels\": ...}}': that run saw the test set). Labels for "
    "lm-eval's many-shot runs come from --split pool"
)


@dataclass(frozen=True)
class SplitPool(LabelHook):
    """Label one side (``pool``, ``test`` or ``all``) of the split the ``icm_*`` lm-eval tasks use, read from the
    job's ``data`` or, without it, the ``icm_<task>`` task's own data; ``limit`` keeps whole groups."""

    split: str

    def load_pool(self, job: LabelJob, task: Task) -> list[Example]:
        from icm_plugin.core.loaders import limit_pool

        if self.split == "test":  # up front: the labelling may take hours, the refusal comes only at lm-eval time
            print(TEST_SPLIT_WARNING.format(task=task.name), file=sys.stderr)
        examples = split_examples(task_examples(task, job.data), self.split)
        return limit_pool(examples, job.limit) if job.limit else examples
