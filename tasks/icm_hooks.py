"""Names the ``!function icm_hooks.X`` hooks of the icm_* YAMLs and of every task file ICM writes (a run folder's
``task.yaml``, beside a copy of this file): lm-eval 0.4.x resolves a module next to the YAML, so this file
re-exports the package's hooks (the code lives in ``icm_plugin.integrations.lmeval.hooks``) and tells ``icm_dataset`` which
folder to look for the task file in."""

from pathlib import Path

from icm_plugin.integrations.lmeval import hooks
from icm_plugin.integrations.lmeval.hooks import DemonstrationSampler, balanced_accuracy, process_results

__all__ = ["DemonstrationSampler", "balanced_accuracy", "icm_dataset", "process_results"]


def icm_dataset(**kwargs):
    return hooks.icm_dataset(folder=str(Path(__file__).resolve().parent), **kwargs)
