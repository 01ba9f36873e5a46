"""Shared pytest fixtures. ``tests/`` is put on ``sys.path`` so tests can ``from tiny import make_tiny_model``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from tiny import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a tiny random Llama-style model + BPE tokenizer, built once per test session."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", seed=0)
