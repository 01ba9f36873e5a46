"""Argilla commands of `icm`: `argilla up|status|down`, `push`, `pull`, and the Argilla options of `label`.

`icm_plugin.cli` imports this module and calls ``add_commands``/``add_label_options``; `icm label` calls
``load_pool`` before labelling and ``after_label`` once the run folder is written.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from icm_plugin.errors import ICMError
from icm_plugin.examples import Example
from icm_plugin.tasks import Task

# what the Argilla commands import that only the "argilla" extra installs
EXTRA_MODULES = ("argilla", "httpx", "httpx_retries")
INSTALL_EXTRA = 'pip install "icm-plugin[argilla]"'


def _extra_error(missing: str) -> ICMError:
    return ICMError(f"the Argilla commands need the argilla extra, which is not installed (no module named "
                    f"{missing!r}): {INSTALL_EXTRA} (from a checkout: pip install -e \".[argilla]\")")


@contextmanager
def needs_extra() -> Iterator[None]:
    """Run the block only with the argilla extra installed; a missing package of it (checked up front, and
    any that an import inside the block misses) becomes one ICMError naming ``pip install "icm-plugin[argilla]"``."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise _extra_error(missing[0])
    try:
        yield
    except ModuleNotFoundError as err:
        if not err.name or err.name.split(".")[0] == "icm_plugin":
            raise
        raise _extra_error(err.name) from None


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


def _connect(args: argparse.Namespace):
    with needs_extra():
        from icm_plugin.argilla.client import connect
    return connect(getattr(args, "api_url", None), getattr(args, "api_key", None))


def _cmd_stack(args: argparse.Namespace) -> int:
    with needs_extra():
        from icm_plugin.argilla.stack import LocalStack

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
        from icm_plugin.argilla.push import push_run
        from icm_plugin.argilla.run_folder import RunFolder

    run = RunFolder.read(args.run_dir)  # checked before connecting: a bad folder never half-pushes
    client = _connect(args)
    result = push_run(client, run, args.dataset, args.workspace)
    _print_urls(result)
    return 0


def _print_urls(result) -> None:
    print(f"icm: review it at {result.url} (dataset {result.dataset!r}, workspace {result.workspace!r}); "
          f"flagged groups: {result.conflicts_url}")


def _cmd_pull(args: argparse.Namespace) -> int:
    with needs_extra():
        from icm_plugin.argilla.pull import pull_labels, write_labels_file

    client = _connect(args)
    result = pull_labels(client, args.dataset, args.workspace, args.question, args.true_label)
    path = write_labels_file(result.rows, args.out)
    read = " and ".join(f"{n} from {name!r}" for name, n in result.answers.items())
    print(f"icm: {len(result.rows)} submitted label(s) -> {path} (answers read: {read})"
          + (f"; {result.ties} example(s) left out: answers split evenly" if result.ties else ""))
    if result.disagreements:
        print(f"icm: note: {len(result.disagreements)} example(s) answered differently in the datasets (e.g. "
              f"{result.disagreements[0]!r}): the majority of all their answers is used")
    return 0


def load_pool(args: argparse.Namespace, task: Task) -> list[Example] | None:
    """`icm label` hook: the pool from ``--argilla-dataset`` (None without it). Also checks, before the long
    labelling starts, that the server in ``--push`` answers and accepts the key."""
    name = getattr(args, "argilla_dataset", None)
    if name is None and getattr(args, "question", None) is not None:
        raise ICMError("--question names the question of --argilla-dataset; pass --argilla-dataset NAME too")
    if name is None and getattr(args, "field_map", None):
        raise ICMError("--field-map maps the fields of --argilla-dataset; pass --argilla-dataset NAME too")
    if name is None:
        if getattr(args, "push", None):
            with needs_extra():
                from icm_plugin.argilla.client import argilla_errors, workspace_name
                from icm_plugin.argilla.push import check_names

            check_names(args.push)  # before the long labelling, not after it

            client = _connect(args)
            with argilla_errors(client.api_url):
                workspace_name(client, args.workspace)
        return None
    if getattr(args, "data", None):
        raise ICMError("pass either --data or --argilla-dataset, not both")
    if not getattr(args, "question", None):
        raise ICMError("--argilla-dataset needs --question Q: the LabelQuestion that receives ICM's suggestions")
    with needs_extra():
        from icm_plugin.argilla.source import examples_from_dataset, parse_field_map

    field_map = parse_field_map(args.field_map)
    client = _connect(args)
    examples = examples_from_dataset(client, name, args.workspace, task, field_map, args.question, args.true_label)
    if getattr(args, "limit", None):
        from icm_plugin.loaders import limit_pool

        examples = limit_pool(examples, args.limit)
    print(f"icm: read {len(examples)} record(s) from Argilla dataset {name!r}")
    return examples


def after_label(args: argparse.Namespace, run_dir: Path) -> None:
    """`icm label` hook: push the run (``--push``) and/or write suggestions back (``--argilla-dataset``)."""
    if not getattr(args, "push", None) and not getattr(args, "argilla_dataset", None):
        return
    with needs_extra():
        from icm_plugin.argilla.push import push_run
        from icm_plugin.argilla.run_folder import RunFolder
        from icm_plugin.argilla.source import write_suggestions

    run = RunFolder.read(run_dir)
    client = _connect(args)
    if args.argilla_dataset:
        write_suggestions(client, run, args.argilla_dataset, args.workspace, args.question, args.true_label)
    if args.push:
        result = push_run(client, run, args.push, args.workspace)
        _print_urls(result)
