"""`icm train` and `icm bench`: a plugin of the ``icm`` CLI (``add_commands``; no options or hooks of ``icm label``).

Light on purpose: the ``icm`` CLI imports plugins on every call; torch, transformers and lm-eval load only when a
command runs.
"""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from icm_plugin.bench import add_bench_parser
    from icm_plugin.train import add_train_parser

    add_train_parser(sub)
    add_bench_parser(sub)


def add_label_options(p: argparse.ArgumentParser) -> None:
    return None


def label_hooks(args: argparse.Namespace) -> list:
    return []
