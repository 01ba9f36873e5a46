"""The method, on top of the data (``core``) and the ``Scorer`` interface (``scoring``); docs/layout.md.

- ``consistency`` (rules, rule decoding), ``objective`` (U, P, I), ``annealing`` (temperature, acceptance),
  ``icm_config`` (hyperparameters), ``proposals``, ``repair``, ``checkpoint``, ``search`` (``ICM``).
- ``baselines`` and ``bootstrap``: what ICM is compared with; ``reliability``: gold-free signals that flag a
  run.
- ``job``: ``LabelJob`` (one label run as plain data) and ``LabelHook`` (what an integration plugs into a
  job).
"""
