"""What runs label jobs; docs/layout.md.

- ``run``: ``label(job)``, with ``preflight`` (checks before anything is written), ``batches`` and
  ``executors``.
- ``train``: fine-tuning on labels; ``bench`` + ``bench_report``: ICM against the baselines on lm-eval tasks.
"""
