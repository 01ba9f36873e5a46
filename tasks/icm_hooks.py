"""Names the icm_* YAMLs' ``!function icm_hooks.X`` hooks: lm-eval 0.4.x before 0.4.10 only resolves a file next
to the YAML, so this file re-exports the package's hooks (the code lives in ``icm_plugin.lmeval.hooks``)."""

from icm_plugin.lmeval.hooks import DemonstrationSampler, balanced_accuracy, icm_dataset, process_results

__all__ = ["DemonstrationSampler", "balanced_accuracy", "icm_dataset", "process_results"]
