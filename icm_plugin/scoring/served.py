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
(``LMEvalScorer.replicas``: one scorer per server, see ``icm_plugin.apps.batches.BatchRunner``).

What the servers answer is checked here too: the label word is found in the echoed prompt tokens, and a
server that returns no prompt log-probabilities, is down or does not answer in time is one clear ICMError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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


def is_api(lm: Any) -> bool:
    """Whether ``lm`` is one of lm-eval's API models (an HTTP server behind it)."""
    try:
        from lm_eval.models.api_models import TemplateAPI
    except ImportError:  # pragma: no cover - lm-eval without its API extras
        return False
    return isinstance(lm, TemplateAPI)


# ---- what OpenAI-compatible completions servers answer ----------------------------------------------------

def _server(lm: Any) -> str:
    return str(getattr(lm, "base_url", None) or "the server")


def no_prompt_logprobs_error(lm: Any, detail: str) -> ICMError:
    return ICMError(
        f"{_server(lm)} returned no log-probabilities for the prompt tokens ({detail}): ICM scores label words "
        "with echo=True, logprobs=1 (prompt log-probabilities). Serve the model with a server that supports them: "
        "vLLM, or llama-cpp-python's server with logits_all=True (llama.cpp's own llama-server does not echo)")


def install_checked_parser(lm: Any) -> None:
    """Replace the backend's ``parse_logprobs`` by one that finds the label word in the echoed tokens.

    lm-eval's OpenAI parser sums ``token_logprobs[ctxlen:-1]``: it assumes the echo holds every prompt token
    plus exactly one generated token. llama-cpp-python drops a leading BOS from the echo and generates nothing
    when the next token is EOS, and a server that ignores ``echo`` returns only the generated token; each of
    these would give a silently wrong sum. Here the continuation is located by its token strings at the end
    of the echoed prompt, and anything else is an ICMError.
    """
    original = type(lm).parse_logprobs
    try:
        from lm_eval.models.openai_completions import LocalCompletionsAPI
    except ImportError:  # pragma: no cover
        return
    if original is not LocalCompletionsAPI.parse_logprobs:
        return  # another API format (its own parser)

    def parse_logprobs(outputs, tokens=None, ctxlens=None, **kwargs):
        outputs = outputs if isinstance(outputs, list) else [outputs]
        choices = [c for out in outputs for c in sorted(_choices(lm, out), key=lambda c: c.get("index", 0))]
        if tokens is None or ctxlens is None or len(choices) != len(ctxlens) or len(tokens) != len(ctxlens):
            raise ICMError(f"{_server(lm)} answered {len(choices)} completions for {len(ctxlens or [])} prompts: "
                           "it does not look like an OpenAI-compatible completions endpoint")
        return [_continuation_logprob(lm, c, list(t), n) for c, t, n in zip(choices, tokens, ctxlens, strict=True)]

    lm.parse_logprobs = parse_logprobs


def _choices(lm: Any, out: Any) -> list[dict]:
    if not isinstance(out, dict) or not isinstance(out.get("choices"), list):
        raise ICMError(f"{_server(lm)} sent a reply without 'choices': not an OpenAI-compatible completions "
                       f"endpoint? (got {str(out)[:200]})")
    return out["choices"]


def _norm(piece: str) -> str:
    # servers spell a leading space as-is, or as SentencePiece's / byte-level BPE's marker
    return piece.replace("\u2581", " ").replace("\u0120", " ")


def _continuation_logprob(lm: Any, choice: dict, toks: list, ctxlen: int) -> tuple[float, bool]:
    if toks and not isinstance(toks[0], int):
        raise ICMError(f"{_server(lm)}: ICM needs lm-eval to tokenize on this side (tokenizer_backend=huggingface "
                       "and tokenizer=...) to find the label words in the reply")
    logprobs = choice.get("logprobs") or {}
    values, pieces = logprobs.get("token_logprobs"), logprobs.get("tokens")
    if not values or not pieces or len(values) != len(pieces):
        raise no_prompt_logprobs_error(lm, "the reply has no 'logprobs.token_logprobs'")
    cont = toks[ctxlen:]
    want = _norm(lm.tokenizer.decode(cont))
    n = len(cont)
    # the continuation ends the echoed prompt; 0 or 1 generated tokens may follow it
    for gen in (1, 0):
        end = len(pieces) - gen
        start = end - n
        if start >= 1 and _norm("".join(pieces[start:end])) == want:
            part = values[start:end]
            if any(v is None for v in part):
                break
            return float(sum(part)), False
    if len(values) <= n + 1:
        raise no_prompt_logprobs_error(lm, f"{len(values)} log-probabilities for a prompt of {len(toks)} tokens")
    raise ICMError(f"{_server(lm)}: could not find the label word {want!r} at the end of the echoed prompt "
                   f"(last tokens {pieces[-4:]!r}): the server's tokenizer differs from tokenizer=... in --model-args")


def api_error(lm: Any, err: BaseException) -> ICMError | None:
    """A clear ICMError for an HTTP/client failure of an API backend (None: not one of those)."""
    if not is_api(lm):
        return None
    import asyncio

    import requests

    server = _server(lm)
    timeout = getattr(lm, "timeout", None)
    try:
        import aiohttp

        aio_connect: tuple = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)
        aio_status: tuple = (aiohttp.ClientResponseError,)
    except ImportError:  # pragma: no cover
        aio_connect, aio_status = (), ()
    if isinstance(err, (requests.Timeout, asyncio.TimeoutError, TimeoutError)):
        return ICMError(f"{server} did not answer within timeout={timeout} s (tried {getattr(lm, 'max_retries', 1)} "
                        "times): raise timeout=... in --model-args, lower batch_size/num_concurrent, or check the server")
    if isinstance(err, requests.ConnectionError) or isinstance(err, aio_connect):
        return ICMError(f"cannot reach {server} (connection refused or dropped): start the server, or fix base_url "
                        "in --model-args")
    status, text = None, ""
    if isinstance(err, requests.HTTPError) and err.response is not None:
        status, text = err.response.status_code, err.response.text
    elif isinstance(err, aio_status):
        status, text = getattr(err, "status", None), getattr(err, "message", "")
    if status is not None:
        if "logprob" in text.lower() or "logits_all" in text:
            return no_prompt_logprobs_error(lm, f"HTTP {status}: {text.strip()[:200]}")
        return ICMError(f"{server} answered HTTP {status}: {text.strip()[:300]}")
    if isinstance(err, (KeyError, TypeError, IndexError)):
        return no_prompt_logprobs_error(lm, f"unexpected reply: {type(err).__name__}: {err}")
    return None
