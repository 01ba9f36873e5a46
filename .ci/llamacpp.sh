#!/usr/bin/env bash
# llama-cpp-python[server] for the OpenAI-compatible server tests (tests/test_backend_llamacpp.py).
# pip builds llama.cpp from source (10+ minutes on 2 cores), so the built wheel is kept in
# ~/.cache/icm-plugin/wheels/<cpu-flags hash>/ (native build: only reused on a CPU with the same flags)
# and installed from there when present. Idempotent: a no-op when the right version, built without AMX,
# already imports.
set -euo pipefail
PY=${PYTHON:-python}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}

# exit 0: this version imports with its server, and its CPU library has no AMX code (an older build of this
# script had; see below)
CHECK='
import pathlib, sys
import llama_cpp, llama_cpp.server.app, uvicorn, fastapi, sse_starlette, starlette_context  # noqa: F401
libs = list((pathlib.Path(llama_cpp.__file__).parent / "lib").glob("libggml-cpu*.so*"))
amx = any(b"ggml_backend_amx_mul_mat" in lib.read_bytes() for lib in libs)
print("llamacpp: llama-cpp-python", llama_cpp.__version__, "built with AMX" if amx else "ready")
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] and libs and not amx else 1)
'
if "$PY" -c "$CHECK" "$VERSION" >/dev/null 2>&1; then
    echo "llamacpp: llama-cpp-python $VERSION[server] already installed"
    exit 0
fi

# only libllama is needed (the server is Python); skip llava/mtmd, tests, examples and tools. No AMX: a native
# build on a CPU that has it executes AMX tile instructions, and a kernel that gives processes no AMX state (a
# Firecracker VM, here) kills the server with a general protection fault at its first matrix multiply (the
# -mno-amx-* flags win over -march=native whatever their order)
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
# the cache key: this CPU's flags and the build options (a wheel built another way is never reused)
flags=$( (grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort; echo "$CMAKE_ARGS") | sha256sum | cut -c1-12)
CACHE=${ICM_CACHE_DIR:-$HOME/.cache/icm-plugin}/wheels/$flags
mkdir -p "$CACHE"
# one build per cache at a time: a second set-up waits for the first one's wheel instead of building its own
exec 9>"$CACHE/.lock"
flock 9
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    t0=$(date +%s)
    echo "llamacpp: building llama-cpp-python $VERSION from source (10+ minutes on 2 cores), once, into $CACHE"
    tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
    # --no-cache-dir: pip would reuse a wheel it built from this sdist before, whatever CMAKE_ARGS say
    CMAKE_ARGS="$CMAKE_ARGS" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$PY" -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$tmp"
    mv "$tmp"/llama_cpp_python-"$VERSION"-*.whl "$CACHE"/   # a killed build leaves no half wheel behind
    rm -rf "$tmp"
    echo "llamacpp: built in $(( $(date +%s) - t0 )) s"
fi
# the wheel from the cache (PyPI has only the sdist; forced: it replaces an AMX build of the same version), then
# its [server] extras from PyPI
"$PY" -m pip install -q --force-reinstall --no-deps "$CACHE"/llama_cpp_python-"$VERSION"-*.whl
"$PY" -m pip install -q --find-links "$CACHE" --only-binary llama-cpp-python "llama-cpp-python[server]==$VERSION"
"$PY" -c "$CHECK" "$VERSION"
