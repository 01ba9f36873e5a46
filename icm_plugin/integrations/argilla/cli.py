"""Argilla commands of `icm`: `argilla up|status|down`, `push`, `pull`, and the Argilla options of `label`.

`icm_plugin.cli.main` imports this module and calls ``add_commands``/``add_label_options``, and ``label_hooks`` to
turn the Argilla options of `icm label` into the job's hooks (``icm_plugin.integrations.argilla.label_hooks``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.argilla.extra import EXTRA_MODULES, INSTALL_EXTRA, needs_extra
from icm_plugin.integrations.argilla.label_hooks import ArgillaServer, FromDataset, PushTo, print_urls
from icm_plugin.method.job import LabelHook, LabelJob, hook_pool

__all__ = ["EXTRA_MODULES", "INSTALL_EXTRA", "add_commands", "add_label_options", "after_label", "label_hooks",
           "load_pool", "needs_extra"]

def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", default=None, help="Argilla URL (default: $ARGILLA_API_URL, else the local stack)")
    p.add_argument("--api-key", default=None, help="Argilla API key (default: $ARGILLA_API_KEY, else the local stack's)")
    p.add_argument("--workspace", default=None, help="Argilla workspace (default: the user's first)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `icm argilla ...`, `icm push` and `icm pull`."""
    p = sub.add_parser("argilla", help="a local Argilla server for reviewing ICM labels (up, status, down)")
    stack = p.add_subparsers(dest="argilla_command", required=True)
    for name, helptext in (("up", "start the local Argilla stack (builds its venv on first use)"),
                           ("status", "show whether the local stack runs, its URL, user and API key"),
                           ("down", "stop the processes `up` started")):
        sp = stack.add_parser(name, help=helptext)
        sp.add_argument("--home", default=None, help="stack folder (default: $ICM_ARGILLA_HOME or ~/.cache/icm-plugin/argilla)")
        if name == "up":
            sp.add_argument("--port", type=int, default=None, help="server port on 127.0.0.1 (default: 6900, or a free one)")
            sp.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the server")
        sp.set_defaults(func=_cmd_stack)

    p = sub.add_parser("push", help="push a run folder to Argilla for review (suggestions + conflicts dataset)")
    p.add_argument("run_dir", help="folder written by `icm label`")
    p.add_argument("--dataset", required=True, help="Argilla dataset name (created, or updated in place)")
    _server_options(p)
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("pull", help="submitted Argilla answers as a labels file for `icm label --clamp`")
    p.add_argument("--dataset", required=True, help="Argilla dataset name (a NAME-conflicts dataset works too)")
    p.add_argument("--out", required=True, help="jsonl file of {id, label} to write")
    p.add_argument("--question", default=None, help="LabelQuestion to read (default: label)")
    p.add_argument("--true-label", default=None, help="which label value means True, if not obvious")
    _server_options(p)
    p.set_defaults(func=_cmd_pull)


def add_label_options(p: argparse.ArgumentParser) -> None:
    """Options of `icm label` for Argilla: push the result, or label an existing Argilla dataset."""
    g = p.add_argument_group("Argilla")
    g.add_argument("--push", default=None, metavar="NAME", help="push the finished run to Argilla dataset NAME")
    g.add_argument("--argilla-dataset", default=None, metavar="NAME",
                   help="label the records of this Argilla dataset and write ICM's labels back as suggestions")
    g.add_argument("--question", default=None, metavar="Q",
                   help="with --argilla-dataset: the LabelQuestion that receives the suggestions")
    g.add_argument("--field-map", default=None, metavar="SLOT=FIELD,...",
                   help="with --argilla-dataset: question=FIELD,choice=FIELD,[choice_2=..],[consistency_id=FIELD or metadata.NAME]")
    g.add_argument("--true-label", default=None, help="with --argilla-dataset: the label value that means True")
    _server_options(g)


def _server(args: argparse.Namespace) -> ArgillaServer:
    return ArgillaServer(getattr(args, "api_url", None), getattr(args, "api_key", None),
                         getattr(args, "workspace", None))


def _cmd_stack(args: argparse.Namespace) -> int:
    with needs_extra():
        from icm_plugin.integrations.argilla.stack import LocalStack

    stack = LocalStack(args.home)
    if args.argilla_command == "up":
        import time

        t0 = time.monotonic()
        info = stack.up(port=args.port, timeout=args.timeout)
        print(info.describe())
        print(f"up in {time.monotonic() - t0:.1f} s; stop it with `icm argilla down`")
        return 0
    if args.argilla_command == "status":
        info = stack.status()
        if info is None:
            print(f"not running (home {stack.home}); start it with `icm argilla up`")
            return 1
        print(info.describe())
        up = stack.is_up()
        print("status: " + ("up" if up else "DOWN or partly down: `icm argilla up` restarts it"))
        return 0 if up else 1
    stack.down()
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    with needs_extra():
        from icm_plugin.core.run_folder import RunFolder
        from icm_plugin.integrations.argilla.review import push_run

    run = RunFolder.read(args.run_dir)  # checked before connecting: a bad folder never half-pushes
    client = _server(args).connect()
    print_urls(push_run(client, run, args.dataset, args.workspace))
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    with needs_extra():
        from icm_plugin.integrations.argilla.answers import pull_labels, write_labels_file

    client = _server(args).connect()
    result = pull_labels(client, args.dataset, args.workspace, args.question, args.true_label)
    path = write_labels_file(result.rows, args.out)
    read = " and ".join(f"{n} from {name!r}" for name, n in result.answers.items())
    print(f"icm: {len(result.rows)} submitted label(s) -> {path} (answers read: {read})"
          + (f"; {result.ties} example(s) left out: answers split evenly" if result.ties else ""))
    if result.disagreements:
        print(f"icm: note: {len(result.disagreements)} example(s) answered differently in the datasets (e.g. "
              f"{result.disagreements[0]!r}): the majority of all their answers is used")
    return 0


def label_hooks(args: argparse.Namespace) -> list[LabelHook]:
    """The Argilla options of `icm label` as the job's hooks: ``FromDataset`` (``--argilla-dataset``) and
    ``PushTo`` (``--push``). Raises ICMError for an option that needs another."""
    name = getattr(args, "argilla_dataset", None)
    if name is None and getattr(args, "question", None) is not None:
        raise ICMError("--question names the question of --argilla-dataset; pass --argilla-dataset NAME too")
    if name is None and getattr(args, "field_map", None):
        raise ICMError("--field-map maps the fields of --argilla-dataset; pass --argilla-dataset NAME too")
    if name is not None and not getattr(args, "question", None):
        raise ICMError("--argilla-dataset needs --question Q: the LabelQuestion that receives ICM's suggestions")
    hooks: list[LabelHook] = []
    if name is not None:
        hooks.append(FromDataset(name, args.question, getattr(args, "field_map", None),
                                 getattr(args, "true_label", None), _server(args)))
    if getattr(args, "push", None):
        hooks.append(PushTo(args.push, _server(args)))
    return hooks


def _job(args: argparse.Namespace) -> LabelJob:
    return LabelJob(data=getattr(args, "data", None), limit=getattr(args, "limit", None),
                    hooks=tuple(label_hooks(args)))


def load_pool(args: argparse.Namespace, task: Task) -> list[Example] | None:
    """The pool a parsed `icm label` command line reads from Argilla (None without ``--argilla-dataset``), after
    the checks its hooks make before labelling (``--push``: the server answers and accepts the key)."""
    return hook_pool(_job(args), task)


def after_label(args: argparse.Namespace, run_dir: Path) -> None:
    """What a parsed `icm label` command line does with the finished run: write suggestions back
    (``--argilla-dataset``) and/or push it (``--push``)."""
    job = _job(args)
    for hook in job.hooks:
        hook.after_label(job, run_dir)
