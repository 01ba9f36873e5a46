#!/usr/bin/env bash
# What the Argilla integration and its tests need (setup.sh --dev runs this); idempotent and quick when all is there.
#   apt:  redis-server (the local stack's queue), chromium (the browser test drives Debian's build): setup.sh --dev
#   pip:  argilla SDK, httpx-retries, playwright (its Python package only: never `playwright install`)
#   venv: the Argilla server's own virtual environment, built once by `icm argilla up`'s own code
#         at $ICM_ARGILLA_VENV, else $ICM_ARGILLA_HOME/venv, else ~/.cache/icm-plugin/argilla/venv
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)

for tool in redis-server chromium; do
  command -v "$tool" >/dev/null || { echo "argilla.sh: $tool is missing: run ./setup.sh --dev (it installs it with apt)" >&2; exit 1; }
done

python - <<'PY' || python -m pip install -q "argilla>=2.8,<2.9" "httpx-retries>=0.6,<1" "playwright>=1.40"
import importlib.metadata as md
assert md.version("argilla").startswith("2.8.")
import httpx_retries, playwright  # noqa: F401
PY

venv=$(python -c "import sys; from icm_plugin.integrations.argilla.stack import LocalStack; s = LocalStack()
s.ensure_venv(echo=lambda m: print(m, file=sys.stderr)); print(s.venv)")
echo "argilla.sh: ready in $(( $(date +%s) - t0 )) s (server venv: $venv)"
