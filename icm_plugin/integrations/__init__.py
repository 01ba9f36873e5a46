"""Other tools, through ``LabelHook``s on a label job (``icm_plugin.method.job``); docs/layout.md.

- ``argilla``: push a run for review, pull the answers back, a dataset as the pool, the local stack.
- ``lmeval``: the ``icm_*`` lm-eval tasks, their data, the pool/test split, the demonstrations.

Each adds its own commands and options to ``icm`` from its ``cli`` module. Keep this file free of imports:
importing one integration must not import the other.
"""
