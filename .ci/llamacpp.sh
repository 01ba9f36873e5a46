#!/usr/bin/env bash
# llama-cpp-python[server] for the OpenAI-compatible server tests (tests/test_backend_llamacpp.py).
# pip builds llama.cpp from source (10+ minutes on 2 cores), so the built wheel is kept in
# ~/.cache/icm-plugin/wheels/<cpu-flags hash>/ (native build: only reused on a CPU with the same flags)
# and installed from there when present. Idempotent: a no-op when the right version already imports.
set -euo pipefail
PY=${PYTHON:-python}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}

if "$PY" - "$VERSION" <<'EOF' 2>/dev/null; then
import sys
import llama_cpp, llama_cpp.server.app, uvicorn, fastapi, sse_starlette, starlette_context  # noqa: F401
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] else 1)
EOF
    echo "llamacpp: llama-cpp-python $VERSION[server] already installed"
    exit 0
fi

flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort | sha256sum | cut -c1-12)
CACHE=${ICM_CACHE_DIR:-$HOME/.cache/icm-plugin}/wheels/$flags
mkdir -p "$CACHE"
# one build per cache at a time: a second set-up waits for the first one's wheel instead of building its own
exec 9>"$CACHE/.lock"
flock 9
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    t0=$(date +%s)
    echo "llamacpp: building llama-cpp-python $VERSION from source (10+ minutes on 2 cores), once, into $CACHE"
    tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
    # only libllama is needed (the server is Python); skip llava/mtmd, tests, examples and tools
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$PY" -m pip wheel -q --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$tmp"
    mv "$tmp"/llama_cpp_python-"$VERSION"-*.whl "$CACHE"/   # a killed build leaves no half wheel behind
    rm -rf "$tmp"
    echo "llamacpp: built in $(( $(date +%s) - t0 )) s"
fi
# the wheel from the cache (PyPI has only the sdist), its [server] extras from PyPI
"$PY" -m pip install -q --find-links "$CACHE" --only-binary llama-cpp-python "llama-cpp-python[server]==$VERSION"
"$PY" -c "import llama_cpp, llama_cpp.server.app; print('llamacpp: llama-cpp-python', llama_cpp.__version__, 'ready')"
