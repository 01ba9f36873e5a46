"""Shared pytest fixtures.

``tests/`` is put on ``sys.path`` so tests can ``from tiny import make_tiny_model``, and the repo root so
plain ``pytest`` imports ``icm_plugin`` without an install.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
for _path in (str(_TESTS_DIR), str(_TESTS_DIR.parent)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from tiny import make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with a tiny random Llama-style model + BPE tokenizer, built once per test session."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model", seed=0)
