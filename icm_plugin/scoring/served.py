"""Served models at full speed: many prompts in flight, over one or several servers, in trie order.

A search's evaluation is a list of prompts sorted by their demonstrations (a depth-first order of the prefix
trie: neighbours share the longest prefixes). ``InFlight`` keeps ``concurrency`` prompts in flight per server
with a thread pool around lm-eval's own client (each call is one prompt's ``loglikelihood``, which posts with
``requests`` and retries with tenacity's exponential backoff, ``max_retries`` times), and gives each server one
contiguous block of that order, so what a server holds in its prefix cache (llama.cpp's slot, vLLM's or SGLang's
radix cache) is what its next prompts begin with. lm-eval's own ``num_concurrent`` path would sort a call's
prompts by length instead, which scatters the shared prefixes.

Several servers of the same model: ``base_url=URL1|URL2|...`` in ``--model-args`` builds one backend per URL.
One search spreads its prompts over all of them; ``icm label --batch-size`` runs its batches on them at once
(``LMEvalScorer.replicas``: one scorer per server, see ``icm_plugin.batches.BatchRunner``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from icm_plugin.errors import ICMError

T = TypeVar("T")

URL_SEPARATOR = "|"


def split_base_urls(model_args: str) -> list[str]:
    """``k=v,...,base_url=A|B,...`` -> one model-args string per URL (the input alone when it names one URL).

    Raises ICMError for an empty URL in the list.
    """
    parts = [p for p in (model_args or "").split(",") if p]
    at = [i for i, p in enumerate(parts) if p.split("=", 1)[0].strip() == "base_url"]
    if not at or URL_SEPARATOR not in parts[at[-1]]:
        return [model_args]
    urls = [u.strip() for u in parts[at[-1]].split("=", 1)[1].split(URL_SEPARATOR)]
    if not all(urls):
        raise ICMError(f"--model-args base_url={parts[at[-1]].split('=', 1)[1]!r}: an empty URL in the list; "
                       f"write base_url=URL1{URL_SEPARATOR}URL2")
    return [",".join(parts[:at[-1]] + [f"base_url={u}"] + parts[at[-1] + 1:]) for u in urls]


class InFlight:
    """Runs ``call(server, item)`` for a list of items, ``concurrency`` at a time per server, results in order.

    The items are cut into one contiguous block per server, and each server's block is started front to back
    by that server's own thread pool. The pools are shared by everything scoring through this object (the
    forks of one scorer), so this process never has more than ``concurrency`` prompts at one server.
    """

    def __init__(self, servers: int, concurrency: int):
        self.servers = max(1, servers)
        self.concurrency = max(1, concurrency)
        self._pools = [ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"icm-server{s}")
                       for s in range(self.servers)]

    def map(self, call: Callable[[int, T], object], items: Sequence[T]) -> list:
        n = len(items)
        futures = [self._pools[s].submit(call, s, items[k])
                   for s in range(self.servers) for k in range(s * n // self.servers, (s + 1) * n // self.servers)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:  # one failed: do not send the rest (a down server would be retried once per prompt)
                f.cancel()
            raise
