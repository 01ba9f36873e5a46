"""Where `icm label --batch-size N` runs its batches: ``--executor sequential``, ``threads`` or ``ray``.

``sequential`` and ``threads`` run in this process (``icm_plugin.apps.batches.BatchRunner``: threads only where the
scorer's backend takes several searches at once). ``ray`` runs each batch as a Ray task (``RayCluster``): on
the local cluster ``ray.init()`` starts, or on a running cluster joined with ``--ray-address``. Each task builds
its own scorer from the job's ``ModelSpec``: a local model on the GPU Ray assigns it (one GPU per batch where
the cluster has GPUs, else one CPU), or a client of the server the model args name (one CPU; the server holds
the GPU). The tasks write into the run folder's ``batches/NNN/`` folders, so the run folder must be on a file
system every node mounts at the same path (a single machine always is). Ray is an optional extra:
``pip install "icm-plugin[ray]"``.

A task's search always continues from its batch's checkpoint when there is one: a task Ray retries after its
worker died (``max_retries``) resumes where it stopped, as `icm label --resume` resumes a killed command.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

from icm_plugin.errors import ICMError
from icm_plugin.scoring.registry import ModelSpec

T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("sequential", "threads", "ray")
INSTALL = 'pip install "icm-plugin[ray]"'
# lm-eval model types that are clients of a server (the rest load the model in the process: hf, vllm, ...)
_SERVED_TYPES = ("gguf", "ggml", "textsynth")


def check_executor(executor: str | None, ray_address: str | None = None) -> None:
    """Refuse an unknown executor, and ``ray_address`` without ``executor="ray"`` (ICMError)."""
    if executor is not None and executor not in EXECUTORS:
        raise ICMError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise ICMError("--ray-address joins a Ray cluster for --executor ray; add --executor ray")


def import_ray():
    """The ``ray`` module, or ICMError naming the install command."""
    try:
        import ray
    except ImportError:
        raise ICMError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def is_served(spec: ModelSpec) -> bool:
    """True when ``spec`` scores through a server (an API backend): its tasks need no GPU of their own."""
    kind = (spec.model_type or "").lower()
    return bool(kind) and ("base_url" in (spec.model_args or "") or "completions" in kind or "chat" in kind
                           or kind in _SERVED_TYPES)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """ICMError unless something accepts a connection at ``address`` (``host:port`` or ``ray://host:port``).

    Checked before ``ray.init`` so an unreachable address is one line at once, not Ray's minute of retries and
    log lines. ``auto`` (the cluster ``ray start`` made on this machine) is left to Ray.
    """
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise ICMError(f"--ray-address {address!r} is not host:port (the head node's address, e.g. 10.0.0.1:6379, "
                       "or ray://host:10001 for Ray Client)")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise ICMError(f"--ray-address {address}: cannot reach a Ray cluster there ({why}); start one with "
                       "`ray start --head` on that machine, or fix the address") from None


class RayCluster:
    """This process's connection to Ray for one command: ``with RayCluster(address) as cluster: ...``.

    address None: ``ray.init()`` (a local cluster with this machine's CPUs and GPUs, or the one ``RAY_ADDRESS``
    names). A process already connected (``ray.init`` called before, as tests and notebooks do) keeps its
    connection; otherwise the connection made here is closed on exit. Raises ICMError: Ray missing, address
    unreachable or refused.
    """

    def __init__(self, address: str | None = None):
        self.address = address
        self.ray = import_ray()
        self._started = False

    def __enter__(self) -> RayCluster:
        ray = self.ray
        if self.address:
            check_reachable(self.address)
        if ray.is_initialized():
            return self
        try:
            ray.init(address=self.address or None, logging_level=logging.WARNING, log_to_driver=True,
                     include_dashboard=False)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            where = f"--ray-address {self.address}" if self.address else "ray.init()"
            raise ICMError(f"{where}: could not connect to Ray ({first})") from None
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False

    def gpus(self) -> float:
        """GPUs in the cluster (0 on a CPU-only one)."""
        return float(self.ray.cluster_resources().get("GPU", 0))

    def gpus_per_batch(self, spec: ModelSpec) -> int:
        """1 for a local model where the cluster has GPUs (or ``--device cuda`` asks), 0 for a server's client
        or ``--device cpu``. ICMError: ``--device cuda`` on a cluster without a GPU."""
        if is_served(spec) or (spec.device or "").startswith("cpu"):
            return 0
        have = self.gpus()
        if (spec.device or "").startswith("cuda") and not have:
            raise ICMError(f"--device {spec.device} asks for a GPU per batch, but the Ray cluster has none; "
                           "use --device cpu or add GPU nodes")
        return 1 if have else 0

    def pin_dtype(self, spec: ModelSpec, gpus: int) -> ModelSpec:
        """``spec`` with ``--dtype auto`` resolved once on a worker as the batches will run (bfloat16 on most
        GPUs; on a CPU, bfloat16 only where it is fast), so every batch and the checkpoints name one dtype."""
        if is_served(spec) or spec.model_type or spec.dtype != "auto":
            return spec
        from icm_plugin.scoring.hardware import resolve_dtype

        dtype = self.map(lambda device: resolve_dtype("auto", device), ["cuda" if gpus else "cpu"], gpus)[0]
        return replace(spec, dtype=dtype, device=None)

    def map(self, fn: Callable[[T], R], items: Sequence[T], gpus: int = 0, desc: str | None = None) -> list[R]:
        """``[fn(item) for item in items]`` with each call a Ray task (1 CPU, ``gpus`` GPUs), results in order.

        ``desc``: a progress bar over the tasks, advanced as each one finishes. An ICMError in a task is raised
        here as itself; on any error or interrupt the tasks still running are cancelled.
        """
        ray = self.ray
        task = ray.remote(_call).options(num_cpus=1, num_gpus=gpus, max_retries=3)
        refs = [task.remote(fn, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        bar = None
        if desc is not None:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(refs), desc=desc, unit="batch")
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    results[index[ref]] = self._get(ref)
                    if bar is not None:
                        bar.update(1)
        except BaseException:
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        return results

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            if isinstance(cause, ICMError):
                raise ICMError(str(cause)) from None
            raise


def _call(fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def task_device() -> str:
    """Inside a Ray task: ``cuda`` where Ray assigned it a GPU (it sees that one as cuda:0), else ``cpu``."""
    import ray

    return "cuda" if ray.get_gpu_ids() else "cpu"
