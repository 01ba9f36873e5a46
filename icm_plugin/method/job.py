"""``LabelJob``: one `icm label` run as plain data (the CLI fills it from flags; notebooks build it directly).

A job names the task, where the pool comes from, the model (``ModelSpec``), the search's hyperparameters
(``ICMConfig``), clamps, the run folder and whether to resume or batch. ``LabelHook``s let an integration
supply the pool (an Argilla dataset, the lm-eval pool split) or act on the finished run folder (push it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.loaders import load_examples, read_label_file
from icm_plugin.core.tasks import Task
from icm_plugin.method.icm_config import ICMConfig
from icm_plugin.scoring.registry import ModelSpec

__all__ = ["EMBEDDED_FACTS_LIMIT", "LabelHook", "LabelJob", "ModelSpec", "default_out", "hook_pool", "load_pool",
           "read_clamp_file"]

# the embedded default job: 16 of the 520 packaged claims (8 questions), so a fresh machine shows labels in about
# three minutes on 2 CPU cores, set-up included (docs/speed.md); --limit 0 labels them all
EMBEDDED_FACTS_LIMIT = 16


class LabelHook:
    """An integration's part in a label job; every method is optional (these defaults do nothing).

    ``data_name``: what the checkpoint records as the job's data when this hook supplies the pool.
    """

    data_name: str | None = None

    def prepare(self, job: LabelJob, task: Task) -> None:
        """Check this hook's settings before the pool is read, the model loads or anything is written
        (ICMError)."""
        return None

    def task(self, job: LabelJob) -> Task | None:
        """The job's task when this hook defines it (an Argilla dataset's own settings), else None."""
        return None

    def load_pool(self, job: LabelJob, task: Task) -> list[Example] | None:
        """The pool, or None to leave it to the next hook and then the loaders (before the model loads)."""
        return None

    def after_label(self, job: LabelJob, run_dir: Path) -> None:
        """Act on the finished run folder (e.g. push it to Argilla)."""
        return None


@dataclass(frozen=True)
class LabelJob:
    """What `icm label` does, as data: ``icm_plugin.label(job)`` runs it.

    task: a built-in task name or a task file (an lm-eval task YAML, ``icm_plugin.core.tasks``); None: the task a
    hook defines (an Argilla dataset's own settings), else ``facts``. data: an ICM-format .json/.jsonl file, a Hugging Face
    dataset name or a ``save_to_disk`` folder (``NAME::split`` picks a split); None: the task's packaged pool.
    limit: keep about this many examples, whole consistency groups (None: all; the packaged facts pool: 16;
    0: all). config: the search's hyperparameters, its seed included. rule: override the task's consistency
    rule. clamp: labels the search must keep: a jsonl of {id, label}, or a dict id -> 0/1. compare_to: an earlier run folder (same seed) to
    count what the clamps changed. out: the run folder (None: ``runs/<task>-<model>-seed<seed>``). resume:
    continue from the checkpoint in ``out``. batch_size: label in batches of about this many examples, whole
    consistency groups, merged into one run folder. executor: where the batches run: ``sequential``,
    ``threads`` or ``ray`` (None: threads where the backend takes several searches at once; see
    ``icm_plugin.apps.executors``). ray_address: the Ray cluster to join (None: ``ray.init()``'s local one).
    hooks: integrations (see ``LabelHook``).
    """

    task: str | None = "facts"
    data: str | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    config: ICMConfig = field(default_factory=ICMConfig)
    limit: int | None = None
    rule: str | None = None
    clamp: str | Path | dict[str, int] | None = None
    compare_to: str | None = None
    out: str | Path | None = None
    resume: bool = False
    batch_size: int | None = None
    executor: str | None = None
    ray_address: str | None = None
    hooks: tuple[LabelHook, ...] = ()

    @property
    def seed(self) -> int:
        return self.config.seed

    def out_dir(self, task: Task) -> Path:
        """The run folder: ``out``, else ``runs/<task>-<model>-seed<seed>``."""
        return Path(self.out) if self.out else default_out(task.name, self.model.display_name, self.seed)

    def data_name(self) -> str | None:
        """The data a checkpoint records: a hook's (``argilla:NAME``), else ``data``."""
        return next((h.data_name for h in self.hooks if h.data_name), self.data)

    def run_info(self, task: Task, rule: str) -> dict[str, Any]:
        """The run facts a checkpoint records and a resume must match (``icm_plugin.method.checkpoint.RUN_FLAGS``)."""
        return {"task": task.name, "data": self.data_name(), **self.model.run_facts(), "rule": rule}

    def clamps(self) -> dict[str, int]:
        """The clamped labels, id -> 0/1 (read from the file when ``clamp`` is a path; ICMError for a bad one)."""
        if self.clamp is None:
            return {}
        if isinstance(self.clamp, dict):
            return {str(k): int(v) for k, v in self.clamp.items()}
        return read_clamp_file(self.clamp)

    @property
    def clamp_source(self) -> str | None:
        """How error messages name the clamps: the file, or "the clamped labels"."""
        if self.clamp is None:
            return None
        return "the clamped labels" if isinstance(self.clamp, dict) else str(self.clamp)

    def config_record(self, task: Task, rule: str, **extra: Any) -> dict[str, Any]:
        """The settings written to the run folder's ``config.json``; ``extra`` (the batch fields) before the
        hyperparameters."""
        return {"task": task.name, "model": self.model.model, "data": self.data, "limit": self.limit, "rule": rule,
                "scorer": self.model.scorer, "model_type": self.model.model_type,
                "model_args": self.model.model_args, "clamp": self.clamp if isinstance(self.clamp, dict) or self.clamp is None else str(self.clamp),
                **extra,
                "hyperparameters": asdict(self.config)}


def job_task(job: LabelJob) -> Task:
    """The job's task: a hook's (``--argilla-dataset`` without ``--task``), else ``job.task`` (default facts)."""
    from icm_plugin.core.tasks import get_task

    for hook in job.hooks:
        task = hook.task(job)
        if task is not None:
            return task
    return get_task(job.task or "facts")


def default_out(task: str, model: str, seed: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name or model)
    return Path("runs") / f"{task}-{slug}-seed{seed}"


def read_clamp_file(path: str | Path) -> dict[str, int]:
    """Labels a search must keep: jsonl lines {"id": ..., "label": 0/1/true/false}."""
    return read_label_file(path)


def hook_pool(job: LabelJob, task: Task) -> list[Example] | None:
    """Every hook's ``prepare``, then the pool of the first hook that supplies one (None: no hook does)."""
    for hook in job.hooks:
        hook.prepare(job, task)
    for hook in job.hooks:
        pool = hook.load_pool(job, task)
        if pool is not None:
            return pool
    return None


def load_pool(job: LabelJob, task: Task) -> list[Example]:
    """The job's pool: the first hook that supplies one, else ``data`` (or the packaged pool) via the loaders."""
    pool = hook_pool(job, task)
    if pool is not None:
        return pool
    limit = job.limit
    if limit is None and job.data is None and task.name == "facts":
        limit = EMBEDDED_FACTS_LIMIT
    return load_examples(job.data, task, limit or None)
