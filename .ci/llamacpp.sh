#!/usr/bin/env bash
# llama-cpp-python[server] for the OpenAI-compatible server tests (tests/test_backend_llamacpp.py).
# pip builds llama.cpp from source (10+ minutes on 2 cores), so the built wheel is kept in
# ~/.cache/icm-plugin/wheels/<cpu-flags hash>/ (native build: only reused on a CPU with the same flags)
# and installed from there when present. Idempotent: a no-op when the right version already imports.
set -euo pipefail
PY=${PYTHON:-python}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}

if "$PY" - "$VERSION" <<'EOF' 2>/dev/null; then
import pathlib, sys
import llama_cpp, llama_cpp.server.app, uvicorn, fastapi, sse_starlette, starlette_context  # noqa: F401
# a wheel built with AMX (see below) is replaced: its kernels crash on this kind of VM
amx = any(b"amx repack tensor" in f.read_bytes() for f in pathlib.Path(llama_cpp.__file__).parent.glob("lib/libggml-cpu.so*"))
sys.exit(0 if llama_cpp.__version__ == sys.argv[1] and not amx else 1)
EOF
    echo "llamacpp: llama-cpp-python $VERSION[server] already installed"
    exit 0
fi

flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort | sha256sum | cut -c1-12)
# AMX off: some VMs (Firecracker here) advertise amx_int8 but its tile instructions raise SIGILL in ggml's AMX
# matmul (any prompt over a few tokens crashed the server); "-noamx" keeps such wheels apart from older ones
CACHE=${ICM_CACHE_DIR:-$HOME/.cache/icm-plugin}/wheels/$flags-noamx
mkdir -p "$CACHE"
if ! ls "$CACHE"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
    t0=$(date +%s)
    echo "llamacpp: building llama-cpp-python $VERSION from source (10+ minutes on 2 cores), once, into $CACHE"
    tmp=$(mktemp -d "$CACHE/.build-XXXXXX")
    # only libllama is needed (the server is Python); skip llava/mtmd, tests, examples and tools
    CMAKE_ARGS="-DCMAKE_C_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DCMAKE_CXX_FLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$PY" -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -w "$tmp"
    mv "$tmp"/llama_cpp_python-"$VERSION"-*.whl "$CACHE"/   # a killed build leaves no half wheel behind
    rm -rf "$tmp"
    echo "llamacpp: built in $(( $(date +%s) - t0 )) s"
fi
# the wheel from the cache (PyPI has only the sdist), its [server] extras from PyPI
"$PY" -m pip install -q --force-reinstall --no-deps --find-links "$CACHE" --only-binary llama-cpp-python "llama-cpp-python==$VERSION"
"$PY" -m pip install -q --find-links "$CACHE" --only-binary llama-cpp-python "llama-cpp-python[server]==$VERSION"
"$PY" -c "import llama_cpp, llama_cpp.server.app; print('llamacpp: llama-cpp-python', llama_cpp.__version__, 'ready')"
