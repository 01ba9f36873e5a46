"""ICM as a labelling source in Argilla: push a run for review, pull the human answers back, re-run.

    push(run, dataset=..., client=rg.Argilla(...))   a run folder -> review dataset + NAME-conflicts dataset
    pull(dataset=..., client=...)                    submitted answers -> {id: label} (clamps for a re-run)

    extra.py       what the argilla extra installs; one error when it is missing
    stack.py       `icm argilla up|status|down`: a local Argilla (its own venv, Redis, osmem, worker)
    server_main.py runs inside the server's venv: script-less search engine + argilla-server's CLI
    client.py      one `argilla.Argilla` client per command (retries via httpx-retries), errors -> ICMError
    schema.py      a task's prompt as Argilla settings (fields, LabelQuestion, metadata)
    review.py      run -> review dataset + NAME-conflicts dataset (idempotent upserts)
    answers.py     submitted responses -> {id, label} jsonl for `icm label --clamp`
    source.py      an existing dataset as the pool, and ICM's labels written back as suggestions
    label_hooks.py the label job's Argilla hooks (FromDataset, PushTo)
    cli.py         the argparse commands; `icm label`'s Argilla options -> hooks

The Argilla SDK (2.8) does all talking to the server, through the client passed in; nothing here keeps a global
client. Importing this package does not import the SDK (the names below load on first use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ArgillaServer", "FromDataset", "PushTo", "pull", "push"]


def push(run: Any, dataset: str, client: Any, workspace: str | None = None) -> Any:
    """Push ``run`` (an ``icm_plugin.RunFolder`` or its path) to the Argilla dataset ``dataset`` for review, and
    its flagged groups to ``dataset-conflicts``, through ``client`` (an ``argilla.Argilla``). Upserts: a second
    push updates the records in place and keeps their answers. Returns an
    ``icm_plugin.integrations.argilla.review.PushResult`` (counts, ``url``, ``conflicts_url``). Raises ICMError."""
    from icm_plugin.core.run_folder import RunFolder
    from icm_plugin.integrations.argilla.extra import needs_extra

    with needs_extra():
        from icm_plugin.integrations.argilla.review import push_run
    folder = run if isinstance(run, RunFolder) else RunFolder.read(Path(run))
    return push_run(client, folder, dataset, workspace)


def pull(dataset: str, client: Any, workspace: str | None = None, question: str | None = None,
         true_label: str | None = None) -> dict[str, int]:
    """The submitted answers of ``dataset`` (and of ``dataset-conflicts``) as labels, example id -> 0/1 (the
    majority of each example's answers; even splits left out): the clamps of a re-run
    (``LabelJob(clamp=...)`` takes them written with ``answers.write_labels_file``). Raises ICMError."""
    from icm_plugin.integrations.argilla.extra import needs_extra

    with needs_extra():
        from icm_plugin.integrations.argilla.answers import pull_labels
    result = pull_labels(client, dataset, workspace, question, true_label)
    return {row["id"]: int(row["label"]) for row in result.rows}


def __getattr__(name: str) -> Any:
    if name in ("ArgillaServer", "FromDataset", "PushTo"):
        from icm_plugin.integrations.argilla import label_hooks

        return getattr(label_hooks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
