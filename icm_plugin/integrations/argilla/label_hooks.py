"""Argilla's part in a label job (``icm_plugin.method.job.LabelHook``): a dataset as the pool, the run pushed for review.

``FromDataset`` reads an existing Argilla dataset as the pool and writes ICM's labels back as suggestions;
``PushTo`` checks the server before the labelling and pushes the finished run. Each talks to the server through
the ``client`` it is given (an ``argilla.Argilla``), else one built from ``server``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.extra import needs_extra
from icm_plugin.method.job import LabelHook, LabelJob


@dataclass(frozen=True)
class ArgillaServer:
    """Where the server is: URL and key (None: ``$ARGILLA_API_URL``/``$ARGILLA_API_KEY``, else the local stack of
    `icm argilla up`) and the workspace (None: the user's first)."""

    api_url: str | None = None
    api_key: str | None = None
    workspace: str | None = None

    def connect(self, client: Any = None) -> Any:
        """``client`` when given, else a new ``argilla.Argilla`` for this server (ICMError when unreachable)."""
        if client is not None:
            return client
        with needs_extra():
            from icm_plugin.integrations.argilla.client import connect
        return connect(self.api_url, self.api_key)


def print_urls(result: Any) -> None:
    """Where to review a pushed run (``icm_plugin.integrations.argilla.review.PushResult``)."""
    print(f"icm: review it at {result.url} (dataset {result.dataset!r}, workspace {result.workspace!r}); "
          f"flagged groups: {result.conflicts_url}")


@dataclass(frozen=True)
class PushTo(LabelHook):
    """Push the finished run to the Argilla dataset ``dataset`` (and ``dataset-conflicts``) for review."""

    dataset: str
    server: ArgillaServer = field(default_factory=ArgillaServer)
    client: Any = None

    def prepare(self, job: LabelJob, task: Task) -> None:
        """Before the long labelling: the name fits Argilla and the server answers and accepts the key."""
        with needs_extra():
            from icm_plugin.integrations.argilla.client import argilla_errors, workspace_name
            from icm_plugin.integrations.argilla.review import check_names

        check_names(self.dataset)
        client = self.server.connect(self.client)
        with argilla_errors(client.api_url):
            workspace_name(client, self.server.workspace)

    def after_label(self, job: LabelJob, run_dir: Path) -> None:
        with needs_extra():
            from icm_plugin.integrations.argilla.review import push_run
        from icm_plugin.core.run_folder import RunFolder

        run = RunFolder.read(run_dir)
        print_urls(push_run(self.server.connect(self.client), run, self.dataset, self.server.workspace))


@dataclass(frozen=True)
class FromDataset(LabelHook):
    """The records of the Argilla dataset ``dataset`` as the pool; ICM's labels go back as suggestions to the
    LabelQuestion ``question``. ``field_map``: ``question=FIELD,choice=FIELD,...`` (see
    ``icm_plugin.integrations.argilla.source.parse_field_map``); ``true_label``: the label value that means True."""

    dataset: str
    question: str
    field_map: str | None = None
    true_label: str | None = None
    server: ArgillaServer = field(default_factory=ArgillaServer)
    client: Any = None

    @property
    def data_name(self) -> str:  # type: ignore[override]
        return f"argilla:{self.dataset}"

    def prepare(self, job: LabelJob, task: Task) -> None:
        if job.data:
            raise ICMError("pass either --data or --argilla-dataset, not both")

    def task(self, job: LabelJob) -> Task | None:
        """Without ``--task``: the task the dataset's own settings describe (its text fields, the question)."""
        if job.task is not None:
            return None
        if self.field_map:
            raise ICMError("--field-map maps a dataset's fields onto a task's prompt: pass --task with it")
        with needs_extra():
            from icm_plugin.integrations.argilla.source import task_from_dataset
        return task_from_dataset(self.server.connect(self.client), self.dataset, self.server.workspace, self.question)

    def load_pool(self, job: LabelJob, task: Task) -> list[Example]:
        with needs_extra():
            from icm_plugin.integrations.argilla.source import (
                examples_from_dataset,
                examples_from_own_fields,
                parse_field_map,
            )

        field_map = parse_field_map(self.field_map)
        client = self.server.connect(self.client)
        if task.source == f"argilla:{self.dataset}":
            examples = examples_from_own_fields(client, self.dataset, self.server.workspace, task)
        else:
            examples = examples_from_dataset(client, self.dataset, self.server.workspace, task, field_map,
                                             self.question, self.true_label)
        if job.limit:
            from icm_plugin.core.loaders import limit_pool

            examples = limit_pool(examples, job.limit)
        print(f"icm: read {len(examples)} record(s) from Argilla dataset {self.dataset!r}")
        return examples

    def after_label(self, job: LabelJob, run_dir: Path) -> None:
        with needs_extra():
            from icm_plugin.integrations.argilla.source import write_suggestions
        from icm_plugin.core.run_folder import RunFolder

        write_suggestions(self.server.connect(self.client), RunFolder.read(run_dir), self.dataset,
                          self.server.workspace, self.question, self.true_label)
