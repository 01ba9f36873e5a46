#!/usr/bin/env bash
# Installs what the Argilla integration and its tests need; idempotent and quick when all is there.
#   apt:  redis-server (the local stack's queue), chromium (the browser test drives Debian's build)
#   pip:  argilla SDK, httpx-retries, playwright (its Python package only: never `playwright install`)
#   venv: the Argilla server's own virtual environment, built once by `icm argilla up`'s own code
#         at $ICM_ARGILLA_VENV or ~/.cache/icm-plugin/argilla/venv (kept between runs on one machine)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "argilla.sh: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python - <<'PY' || python -m pip install -q "argilla>=2.8,<2.9" "httpx-retries>=0.6,<1" "playwright>=1.40"
import importlib.metadata as md
assert md.version("argilla").startswith("2.8.")
import httpx_retries, playwright  # noqa: F401
PY

python -c "from icm_plugin.argilla.stack import LocalStack; LocalStack().ensure_venv()"
echo "argilla.sh: ready in $(( $(date +%s) - t0 )) s (server venv: ${ICM_ARGILLA_VENV:-$HOME/.cache/icm-plugin/argilla/venv})"
