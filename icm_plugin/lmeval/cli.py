"""Command line for the lm-eval side: ``python -m icm_plugin.lmeval {path,pool}`` and the ``icm label --split``
option (a plugin of the ``icm`` CLI: ``add_label_options`` / ``load_pool`` / ``after_label`` / ``add_commands``).

Light on purpose: the ``icm`` CLI imports plugins on every call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from icm_plugin.errors import ICMError
from icm_plugin.examples import Example
from icm_plugin.tasks import Task

SPLITS = ("pool", "test", "all")


def split_examples(examples: list[Example], split: str) -> list[Example]:
    """The ``pool`` or ``test`` side of ``split_pool`` (``all``: unchanged)."""
    from icm_plugin.lmeval.split import split_pool

    if split == "all":
        return examples
    pool, test = split_pool(examples)
    chosen = pool if split == "pool" else test
    if not chosen:
        raise ICMError(f"the {split} side of the split is empty ({len(examples)} examples is too few to split)")
    return chosen


def task_records(task: Task, data: str | None, data_dir: str | None = None) -> list[tuple[dict[str, Any], Example]]:
    """(raw record, Example) pairs from an explicit ``--data`` file, else from the ``icm_<task>`` lm-eval data."""
    from icm_plugin.lmeval import sources
    from icm_plugin.loaders import examples_from_records

    if data:
        records, source = list(sources.read_records(data)), data
    else:
        records, source = sources.task_records(task.name, data_dir)
    examples = examples_from_records(records, task, source)
    return [(record, ex) for (_, record), ex in zip(records, examples, strict=True)]


def task_examples(task: Task, data: str | None, data_dir: str | None = None) -> list[Example]:
    """An explicit ``--data`` source, else the same source the ``icm_<task>`` lm-eval task reads."""
    return [ex for _, ex in task_records(task, data, data_dir)]


# ---- plugin hooks for `icm label` ----------------------------------------------------------------------------


def add_label_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="label only the pool side of the lm-eval pool/test split (what icm_* tasks draw "
                        "demonstrations from); without --data, reads the icm_<task> data")


TEST_SPLIT_WARNING = (
    "icm: warning: --split test labels the held-out test split of the icm_{task} lm-eval task: lm-eval will refuse "
    "these labels as demonstrations (--metadata '{{\"labels\": ...}}': that run saw the test set). Labels for "
    "lm-eval's many-shot runs come from --split pool"
)


def load_pool(args: argparse.Namespace, task: Task) -> list[Example] | None:
    split = getattr(args, "split", None)
    if split is None:
        return None
    from icm_plugin.loaders import limit_pool

    if split == "test":  # up front: the labelling may take hours, the refusal comes only at lm-eval time
        print(TEST_SPLIT_WARNING.format(task=task.name), file=sys.stderr)

    examples = split_examples(task_examples(task, args.data), split)
    return limit_pool(examples, args.limit) if args.limit else examples


def after_label(args: argparse.Namespace, out: Path) -> None:
    return None


def add_commands(sub: argparse._SubParsersAction) -> None:
    return None


# ---- python -m icm_plugin.lmeval -----------------------------------------------------------------------------


def _cmd_path(args: argparse.Namespace) -> int:
    from icm_plugin.lmeval.discovery import tasks_dir

    print(tasks_dir())
    return 0


def _cmd_pool(args: argparse.Namespace) -> int:
    from icm_plugin.loaders import limit_pool
    from icm_plugin.tasks import get_task

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
    parser = argparse.ArgumentParser(prog="python -m icm_plugin.lmeval", description="lm-eval side of icm-plugin")
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
