"""Served scoring that servers can cache: one request per prompt, the next token's top log-probabilities.

The echo path (``LMEvalScorer``, lm-eval's ``loglikelihood``) sends one request per prompt *per label word*
and asks for the prompt's own log-probabilities (``echo=True, logprobs=1``); vLLM does not read its prefix cache
for such requests, and llama-cpp-python computes a full-vocabulary log-softmax at every echoed position. The
``NextTokenScorer`` here asks, like the ICM authors' code, for ONE generated token at the end of the prompt
and its top-K log-probabilities::

    {"prompt": PROMPT, "max_tokens": 1, "logprobs": K, "echo": false, "temperature": 0, "cache_prompt": true}

and reads the log-probabilities of all k label words of the task from that one answer. The prompt is the
echo path's context, byte for byte (``LMEvalScorer.prompt``: the BOS text where the local tokenizer would not
add it, the demonstrations each followed by the separator, then the query); requests go out in the same trie
order (sorted by demonstration tuple), ``num_concurrent`` in flight per server, each server of
``base_url=A|B`` taking one contiguous block (``icm_plugin.scoring.served.InFlight``), so a server's prefix
cache holds what its next prompt begins with. ``cache_prompt: true`` is llama.cpp's prompt-cache switch
(llama-cpp-python reuses its slot's common prefix anyway; other servers ignore the field).

Exactness. A label word's log-probability is exact when its token is in the answer's top-K list. A label
outside the list gets a floor: the smallest log-probability in that list (the label's true value is at most
that, so the floor never understates how much the model prefers the listed labels). ``labels_below_top_k``
counts the floored label scores (the run report shows it); raise it with ``top_logprobs=K`` in
``--model-args`` (vLLM: the server's ``--max-logprobs``, default 20, caps K). A label word missing from every answer so far, once there are
``MISSING_AFTER`` (16) answers, is an ICMError (it is probably several tokens for the server's tokenizer, or K
is too small), and so is an answer without next-token log-probabilities. (A small base model need not put a
label word in its top 20 after a prompt without demonstrations: Gemma-3-270M does not for " True" after the
facts task's "2+2?" claims, so a few early answers without it are floors, not an error.)

Label words must be one token each (checked with the local tokenizer, ``tokenizer=`` in ``--model-args``, when
there is one); a label of several tokens is refused with an ICMError naming it: use ``scoring=echo``.

Choosing the path (``--model-args``, removed before lm-eval sees them):

- ``scoring=next-token`` (the default for completions servers: ``local-completions``, ``openai-completions``),
- ``scoring=echo``: lm-eval's ``loglikelihood`` with echoed prompt log-probabilities, one request per label word
  (for servers without next-token log-probabilities; exact for label words of several tokens),
- ``top_logprobs=K`` (default 20): how many next-token log-probabilities to ask for.

Other lm-eval model types (``hf``, ``vllm``, ``gguf``, chat APIs) always score through ``loglikelihood``.

``token_forwards`` counts the prompt tokens submitted, once per prompt (the echo path counts each prompt once
per label word). What a server actually computes after reusing its cache is in its own log (see
``benchmarks/served.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.lmeval_backend import LMEvalScorer, make_lm
from icm_plugin.scoring.served import _norm, _server, api_error, is_api, split_base_urls

#: how many next-token log-probabilities a request asks for by default (the ICM authors' value; vLLM's cap)
DEFAULT_TOP_K = 20
SCORING_CHOICES = ("next-token", "echo")
#: a label word absent from the top-K lists of this many answers in a row (from the first) is an ICMError
MISSING_AFTER = 16


def pop_scoring_args(model_args: str) -> tuple[str | None, int, str]:
    """``k=v,...`` -> (``scoring`` or None when not given, ``top_logprobs``, the model args without both).

    Raises ICMError for an unknown ``scoring`` or a ``top_logprobs`` that is not a whole number >= 1.
    """
    scoring, top_k, rest = None, DEFAULT_TOP_K, []
    for part in filter(None, (model_args or "").split(",")):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key == "scoring":
            if value not in SCORING_CHOICES:
                raise ICMError(f"--model-args scoring={value!r}: choose one of {', '.join(SCORING_CHOICES)}")
            scoring = value
        elif key == "top_logprobs":
            try:
                top_k = int(value)
            except ValueError:
                top_k = 0
            if top_k < 1:
                raise ICMError(f"--model-args top_logprobs={value!r}: a whole number >= 1 (default {DEFAULT_TOP_K})")
        else:
            rest.append(part)
    return scoring, top_k, ",".join(rest)


def next_token_capable(lm: Any) -> bool:
    """Whether ``lm`` talks to an OpenAI-compatible *completions* endpoint (prompt in, ``logprobs=K`` out)."""
    if not is_api(lm):
        return False
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    return isinstance(lm, LocalCompletionsAPI)


def build_backend_scorer(model_type: str, model_args: str = "", label_words: Sequence[str] = (" False", " True"),
                         separator: str = "\n\n", batch_size: int | str | None = None,
                         device: str | None = None) -> LMEvalScorer:
    """The scorer for ``--model-type``/``--model-args``: ``NextTokenScorer`` for a completions server unless
    ``scoring=echo``, else the ``loglikelihood`` path (``LMEvalScorer``). ``base_url=A|B`` builds one backend
    per server."""
    scoring, top_k, rest = pop_scoring_args(model_args)
    first, *others = [make_lm(model_type, args, batch_size, device) for args in split_base_urls(rest)]
    if scoring != "echo" and next_token_capable(first):
        return NextTokenScorer(first, label_words, separator, model_type, servers=others, top_k=top_k)
    if scoring == "next-token":
        raise ICMError(f"--model-args scoring=next-token needs an OpenAI-compatible completions server "
                       f"(local-completions, openai-completions); {model_type!r} scores through loglikelihood: "
                       "drop scoring=next-token")
    return LMEvalScorer(first, label_words, separator, model_type, servers=others)


def no_next_token_logprobs_error(lm: Any, detail: str) -> ICMError:
    return ICMError(
        f"{_server(lm)} returned no next-token log-probabilities ({detail}): ICM asks for max_tokens=1, "
        "logprobs=K. Serve the model with a server that returns them (vLLM; llama-cpp-python's server with "
        "--logits_all True), or score through prompt log-probabilities with scoring=echo in --model-args")


class NextTokenScorer(LMEvalScorer):
    """One ``max_tokens=1, logprobs=K`` request per prompt; all label words from its top-K list."""

    def __init__(self, lm: Any, label_words: Sequence[str] = (" False", " True"), separator: str = "\n\n",
                 model_type: str = "local-completions", cache_size: int = 1024, servers: Sequence[Any] = (),
                 top_k: int = DEFAULT_TOP_K):
        super().__init__(lm, label_words, separator, model_type, cache_size, servers)
        if not next_token_capable(lm):
            raise ICMError(f"next-token scoring needs an OpenAI-compatible completions server, not {type(lm).__name__}")
        self.top_k = int(top_k)
        #: label scores that were outside an answer's top-K list and got the floor (see the module doc)
        self.labels_below_top_k = 0
        #: HTTP requests sent (one per prompt not answered from the scorer's cache)
        self.requests_sent = 0
        #: answers after which a label word seen in none of them is an ICMError (fewer: it only gets floors)
        self.missing_after = MISSING_AFTER
        self._keys = [_norm(w) for w in self.label_words]
        self._seen = np.zeros(len(self.label_words), dtype=bool)
        self._answers = 0
        self._lock = threading.Lock()
        self._check_single_tokens()

    @property
    def name(self) -> str:
        return f"lm-eval:{self.model_type}"

    def fork(self) -> NextTokenScorer:
        twin = super().fork()
        twin.labels_below_top_k = 0
        twin.requests_sent = 0
        twin._lock = threading.Lock()
        twin._seen = np.zeros(len(self.label_words), dtype=bool)
        twin._answers = 0
        return twin  # type: ignore[return-value]

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        out = super().label_logprobs(requests)
        missing = [w for w, seen in zip(self.label_words, self._seen, strict=True) if not seen]
        if self._answers >= self.missing_after and missing:
            raise ICMError(
                f"{_server(self.lm)}: the label word {', '.join(map(repr, missing))} was in none of the "
                f"{self._answers} answers' "
                f"top-{self.top_k} next-token log-probabilities: it is probably several tokens for the server's "
                "tokenizer (use scoring=echo in --model-args) or rarely predicted here (raise top_logprobs=K)")
        return out

    # ---- one request ---------------------------------------------------------------------------------
    def _forwards(self, n_tokens: int) -> int:
        return n_tokens  # one request per prompt, whatever the number of label words

    def _score(self, server: int, contexts: Sequence[str]) -> np.ndarray:
        return np.array([self._one(self.lms[server], ctx) for ctx in contexts])

    def _one(self, lm: Any, ctx: str) -> list[float]:
        from tenacity import retry, stop_after_attempt, wait_exponential

        message = [lm.tok_encode(ctx)] if getattr(lm, "tokenized_requests", False) else [ctx]
        gen_kwargs = {"max_tokens": 1, "logprobs": self.top_k, "echo": False, "temperature": 0,
                      "cache_prompt": True}
        call = retry(stop=stop_after_attempt(max(1, int(getattr(lm, "max_retries", 1)))),
                     wait=wait_exponential(multiplier=0.5, min=1, max=10), reraise=True)(lm.model_call)
        try:
            reply = call(messages=message, generate=True, gen_kwargs=gen_kwargs)
        except ICMError:
            raise
        except Exception as err:  # noqa: BLE001 - lm-eval's client raises its HTTP errors as they are
            raise self._http_error(lm, err) from None
        with self._lock:
            self.requests_sent += 1
        return self._parse(lm, reply)

    def _http_error(self, lm: Any, err: BaseException) -> BaseException:
        import requests

        if isinstance(err, requests.HTTPError) and err.response is not None:
            text = err.response.text or ""
            if "logprob" in text.lower() or "logits_all" in text:
                return no_next_token_logprobs_error(lm, f"HTTP {err.response.status_code}: {text.strip()[:200]}")
        return api_error(lm, err) or err

    def _parse(self, lm: Any, reply: Any) -> list[float]:
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
            raise ICMError(f"{_server(lm)} answered {str(reply)[:200]!r} to one prompt: not an OpenAI-compatible "
                           "completions endpoint?")
        choice = choices[0]
        logprobs = choice.get("logprobs")
        top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
        if not top or not isinstance(top[0], dict) or not top[0]:
            detail = ("the reply has no 'logprobs'" if not isinstance(logprobs, dict) else
                      f"no 'logprobs.top_logprobs' for the generated token; finish_reason "
                      f"{choice.get('finish_reason')!r}")
            raise no_next_token_logprobs_error(lm, detail)
        values: dict[str, float] = {}
        for piece, value in top[0].items():  # two tokens may print alike: keep the likelier
            if value is not None:
                key = _norm(piece)
                values[key] = max(float(value), values.get(key, -np.inf))
        if not values:
            raise no_next_token_logprobs_error(lm, "the top log-probabilities are all null")
        floor = min(values.values())
        row, floored = [], 0
        seen = np.zeros(len(self._keys), dtype=bool)
        for j, key in enumerate(self._keys):
            if key in values:
                row.append(values[key])
                seen[j] = True
            else:
                row.append(floor)
                floored += 1
        with self._lock:
            self._seen |= seen
            self._answers += 1
            self.labels_below_top_k += floored
        return row

    def _check_single_tokens(self) -> None:
        tok = getattr(self.lm, "tokenizer", None)
        if getattr(self.lm, "tokenizer_backend", None) != "huggingface" or tok is None:
            return  # no local tokenizer: a label of several tokens shows as missing from every answer
        for word in self.label_words:
            ids = tok(word, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ICMError(
                    f"the label word {word!r} is {len(ids)} tokens for the tokenizer in --model-args: next-token "
                    "scoring reads one token per label; use scoring=echo in --model-args (one request per label "
                    "word, prompt log-probabilities) or a task whose label words are one token each")
