"""The data ICM works on, with no model and no search (the lowest layer above ``errors``; docs/layout.md).

- ``examples``: the one example type; ``metrics``: accuracy and the report's numbers.
- ``task_files`` + ``tasks``: a task is an lm-eval task YAML, read and written; ``discovery`` says where the
  built-in ones are, and lets the stock ``lm_eval`` find them (the installed ``.pth`` imports it).
- ``loaders``: pools in; ``writers``: run folder files, report, plot; ``rundir``: a run folder's lock;
  ``run_folder``: ``RunFolder``, a finished run read back.

``discovery`` runs at every interpreter start: keep this file free of imports.
"""
