"""Start a local llama-cpp-python server on a GGUF and wait until it listens; stop it again.

    proc, url = start_llamacpp_server(gguf, threads=1, n_ctx=4096)
    ...  # icm label --model-type local-completions --model-args base_url=URL,...
    stop_server(proc)

``url`` is the server's OpenAI-compatible completions endpoint on 127.0.0.1. The server runs with
``--logits_all True`` (prompt log-probabilities need every position's logits) unless ``logits_all=False``;
``bash .ci/llamacpp.sh`` installs llama-cpp-python[server]. The benchmarks and the tests use this one helper.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from icm_plugin.errors import ICMError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llamacpp_server(gguf: Path, *, threads: int, n_ctx: int, logits_all: bool = True, timeout: float = 180,
                          log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``python -m llama_cpp.server`` on ``gguf`` with ``threads`` threads (also for prompt batches) and
    wait until its port accepts connections. Returns the process and its completions URL. Its stderr goes to
    ``log`` (default: ``server-PORT.log`` beside the GGUF); ICMError with the log's tail when it exits or does
    not listen within ``timeout`` seconds."""
    port = free_port()
    log = log if log is not None else Path(gguf).parent / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", str(n_ctx), "--logits_all", str(logits_all), "--n_threads", str(threads),
         "--n_threads_batch", str(threads)],
        stdout=subprocess.DEVNULL, stderr=log.open("w"), env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ICMError(f"llama.cpp server on {gguf} exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/v1/completions"
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise ICMError(f"llama.cpp server on {gguf} did not listen within {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate the server, and kill it when it has not exited after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
