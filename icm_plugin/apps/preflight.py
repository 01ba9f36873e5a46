"""What `icm label` checks before it writes anything: the clamps, ``--compare-to``, the rule's groups, the
resume, and (once the model is loaded, still before the first write) whether the pool's prompts fit memory.

Every refusal is one ICMError naming the file, id, flag or record and the fix.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example, Groups, canonical_order
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.method.checkpoint import check_resume, read_checkpoint
from icm_plugin.method.icm_config import ICMConfig
from icm_plugin.method.search import CHECKPOINT_VERSION


def check_clamp(clamped: dict[str, int], examples: Sequence[Example], path: str | None) -> None:
    """Every clamped id must be in the pool. Raises ICMError naming the file and the first unknown id."""
    ids = {e.id for e in examples}
    unknown = [i for i in clamped if i not in ids]
    if unknown:
        raise ICMError(f"{path}: clamped id {unknown[0]!r} is not in the pool ({len(unknown)} such id(s)); "
                       "clamp only examples of this pool (same --data and --limit)")


def check_compare_to(path: str | None) -> None:
    """``--compare-to`` must be a finished run folder. Raises ICMError."""
    if path is None:
        return
    labels = Path(path) / "labels.jsonl"
    if not labels.is_file():
        raise ICMError(f"{labels} not found: --compare-to needs a finished run folder")


def check_checkpoint(path: Path, examples: Sequence[Example], cfg: ICMConfig, clamped: dict[str, int],
                     info: dict[str, Any]) -> None:
    """A checkpoint that ``--resume`` would continue must be this command's (ICMError naming what differs)."""
    if path.exists():
        ids = [examples[p].id for p in canonical_order(examples, cfg.seed)]  # the order the search keeps
        check_resume(read_checkpoint(path, CHECKPOINT_VERSION), path, ids, asdict(cfg), clamped, info)


def rule_coverage(examples: Sequence[Example], rule: str, source: str) -> dict[str, Any]:
    """How many consistency groups (2+ examples sharing ``consistency_id``) the rule can check.

    A rule other than ``none`` with no group checks nothing, and its 0 inconsistencies mean nothing: that is
    warned about on stderr and said in the report (``rule_note``).
    """
    groups = Groups(examples).checkable()
    out: dict[str, Any] = {"consistency_groups": groups}
    if rule != "none" and groups == 0:
        note = (f"rule {rule!r} checks pairs inside consistency groups, but no two examples of {source} share a "
                "consistency_id: nothing was checked, so 0 inconsistencies says nothing")
        out["rule_note"] = note
        print(f"icm: warning: {note}; add consistency_id to the records, or pass --rule none", file=sys.stderr)
    return out


def check_pool_memory(scorer: Any, task: Task, examples: Sequence[Example], source: str) -> None:
    """Refuse a pool whose full prompt (every example as a demonstration) would not fit in memory.

    Only scorers with a memory estimate (the transformers ones) are checked. Raises ICMError naming the longest
    record and what can help: when that record alone does not fit, shortening it (a smaller pool cannot help);
    otherwise a smaller pool.
    """
    if not hasattr(scorer, "check_memory"):
        return
    from icm_plugin.scoring.hf import MemoryBudgetError
    from icm_plugin.scoring.memory import attention_implementation, format_size

    tokens = scorer.tokens
    lengths = [max(len(tokens.demo(task.demonstration(e, y))) for y in (0, 1)) for e in examples]
    total = len(tokens.bos) + sum(lengths)
    longest = max(range(len(examples)), key=lambda i: lengths[i])
    try:
        scorer.check_memory(total)
        return
    except MemoryBudgetError as err:
        needed, room = err.needed, err.budget
    impl = attention_implementation(scorer.model.config)
    why = f"about {format_size(needed)} for one forward, with {format_size(room)} available"
    if impl == "eager":
        why += " (eager attention materialises tokens x tokens scores per head per layer)"
    hints = []
    if scorer.dtype_bytes > 2:
        hints.append("--dtype bfloat16 (smaller scores)")
    hints.append("a machine or GPU with more memory")
    hints.append("--memory-limit SIZE if more memory is free than the estimate assumes")
    record = f"example id {examples[longest].id!r} of {source} ({lengths[longest]} tokens)"
    try:
        scorer.check_memory(len(tokens.bos) + lengths[longest])
    except MemoryBudgetError:
        raise ICMError(f"{record} is too long for this machine: every prompt that shows it needs {why}. "
                       f"A smaller pool cannot help: shorten or remove that record; or use "
                       f"{', '.join(hints)}") from None
    fits = _tokens_that_fit(scorer, total)
    mean = total / len(examples)
    raise ICMError(f"the pool's full prompt ({total} tokens; longest record: {record}) needs {why}. Label a smaller "
                   f"pool: --limit {max(1, int(fits / mean))} or --batch-size {max(1, int(fits / mean))} fits; "
                   f"or use {', '.join(hints)}")


def _tokens_that_fit(scorer: Any, upper: int) -> int:
    from icm_plugin.scoring.hf import MemoryBudgetError

    lo, hi = 1, upper
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            scorer.check_memory(mid)
            lo = mid
        except MemoryBudgetError:
            hi = mid - 1
    return lo
