"""icm-plugin: unsupervised label elicitation with Internal Coherence Maximization (Wen et al. 2025).

The Python API mirrors `icm label`::

    import icm_plugin as icm
    run = icm.label(icm.LabelJob(task="facts", model=icm.ModelSpec("gemma-3-270m"), limit=8, out="runs/x"))
    run.labels, run.confidence, run.report, run.to_dataset()

or, with a scorer of your own, ``icm.ICM(scorer, task, icm.ICMConfig(...)).fit(examples).labels_``.
Argilla: ``icm_plugin.integrations.argilla.push(run, dataset=..., client=rg.Argilla(...))`` and ``pull(...)``.
The names below load on first use, so ``import icm_plugin`` stays light.
"""

from __future__ import annotations

from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.errors import ICMError

__all__ = ["ICM", "Example", "ICMConfig", "ICMError", "LabelHook", "LabelJob", "ModelSpec", "RunFolder", "get_task",
           "label", "load_examples"]
__version__ = "0.1.0"

_LAZY = {
    "ICM": "icm_plugin.method.search", "ICMConfig": "icm_plugin.method.icm_config", "LabelHook": "icm_plugin.method.job",
    "LabelJob": "icm_plugin.method.job", "ModelSpec": "icm_plugin.scoring.registry", "RunFolder": "icm_plugin.core.run_folder",
    "get_task": "icm_plugin.core.tasks", "label": "icm_plugin.apps.run", "load_examples": "icm_plugin.core.loaders",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
