"""Command line for the lm-eval side: ``python -m icm_plugin.integrations.lmeval {path,pool}`` and the ``icm label --split``
option (a plugin of the ``icm`` CLI: ``add_label_options`` / ``label_hooks`` / ``add_commands``).

Light on purpose: the ``icm`` CLI imports plugins on every call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.lmeval.pool import SPLITS, SplitPool, split_examples, task_examples, task_records
from icm_plugin.method.job import LabelHook, LabelJob, hook_pool

__all__ = ["SPLITS", "add_commands", "add_label_options", "build_parser", "label_hooks", "load_pool", "main",
           "split_examples", "task_examples", "task_records"]


# ---- plugin hooks for `icm label` ----------------------------------------------------------------------------


def add_label_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="label only the pool side of the lm-eval pool/test split (what icm_* tasks draw "
                        "demonstrations from); without --data, reads the icm_<task> data")


def label_hooks(args: argparse.Namespace) -> list[LabelHook]:
    """``--split`` as the job's ``SplitPool`` hook (none without it)."""
    split = getattr(args, "split", None)
    return [] if split is None else [SplitPool(split)]


def load_pool(args: argparse.Namespace, task: Task) -> list[Example] | None:
    """The pool a parsed `icm label` command line reads from the lm-eval split (None without ``--split``)."""
    job = LabelJob(data=getattr(args, "data", None), limit=getattr(args, "limit", None),
                   hooks=tuple(label_hooks(args)))
    return hook_pool(job, task)


def add_commands(sub: argparse._SubParsersAction) -> None:
    return None


# ---- python -m icm_plugin.integrations.lmeval -----------------------------------------------------------------------------


def _cmd_path(args: argparse.Namespace) -> int:
    from icm_plugin.core.discovery import tasks_dir

    print(tasks_dir())
    return 0


def _cmd_pool(args: argparse.Namespace) -> int:
    from icm_plugin.core.loaders import limit_pool
    from icm_plugin.core.tasks import get_task

    task = get_task(args.task)
    pairs = task_records(task, args.data, args.data_dir)
    examples = split_examples([ex for _, ex in pairs], args.split)
    if args.limit:
        examples = limit_pool(examples, args.limit)
    keep = {ex.id for ex in examples}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record, ex in pairs:
            if ex.id in keep:  # the task's own record (its field names), with the id the split used
                fh.write(json.dumps({**record, "id": ex.id}, ensure_ascii=False) + "\n")
    print(f"wrote {len(examples)} {args.split} examples of icm_{task.name} to {out} (icm label --data {out})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m icm_plugin.integrations.lmeval", description="lm-eval side of icm-plugin")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("path", help="print the folder of the icm_* task YAMLs (for --include_path)")
    p.set_defaults(func=_cmd_path)
    p = sub.add_parser("pool", help="write one side of an icm_* task's pool/test split as ICM-format jsonl")
    p.add_argument("--task", required=True, help="truthfulqa, gsm8k, alpaca or facts")
    p.add_argument("--split", choices=SPLITS, default="pool")
    p.add_argument("--data", default=None, help="an ICM-format file instead of the task's own data")
    p.add_argument("--data-dir", default=None, help="folder of ICM-format files (default: $ICM_DATA_DIR, hub)")
    p.add_argument("--limit", type=int, default=None, help="keep about N examples (whole consistency groups)")
    p.add_argument("--out", required=True, help="output .jsonl")
    p.set_defaults(func=_cmd_pool)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ICMError as err:
        print(f"icm lmeval: error: {err}", file=sys.stderr)
        return 2
