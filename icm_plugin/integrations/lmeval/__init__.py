"""lm-evaluation-harness integration: the ``icm_*`` tasks, their data, the pool/test split, the demonstrations.

- ``split.split_pool(examples) -> (pool, test)``: the one held-out split (by consistency group) that both
  ``icm label --split pool`` and the ``icm_*`` tasks use.
- ``sources``: where each task's examples come from (data folder, public hub dataset, packaged facts).
- ``demonstrations``: the many-shot labels (ICM's labels file, gold, or none).
- ``hooks``: what the YAMLs in the repository's top-level ``tasks/`` call (imported by lm-eval only).
- ``icm_plugin.core.discovery`` (not in this package: core's ``tasks`` needs it): how the stock ``lm_eval``
  finds the tasks without ``--include_path``.

Keep this file free of imports; the names below load on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TEST_FRACTION", "is_test_group", "split_pool", "tasks_dir"]


def __getattr__(name: str) -> Any:
    if name in ("TEST_FRACTION", "is_test_group", "split_pool"):
        from icm_plugin.integrations.lmeval import split

        return getattr(split, name)
    if name == "tasks_dir":
        from icm_plugin.core.discovery import tasks_dir

        return tasks_dir
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
