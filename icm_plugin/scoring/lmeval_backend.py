"""A scorer over any lm-eval model type that implements ``loglikelihood`` (hf, vllm, local-completions, gguf, ...).

``icm label --model-type NAME --model-args k=v,...`` builds the backend exactly as ``lm_eval --model NAME
--model_args k=v,...`` does (lm-eval's model registry), so a cluster that already serves a model with vLLM or
another OpenAI-compatible server labels with the same engine. Each request becomes one prompt string (the
demonstrations, each followed by the separator, then the query) and one ``loglikelihood`` instance per label
word; the label words' log-likelihoods are normalised over the label words, as the native scorers do.

BOS: the native scorers always start a prompt with the tokenizer's BOS token. lm-eval's ``hf`` model tokenizes
with the tokenizer's own default (Gemma and the test model add BOS; SmolLM2's does not) and its API models send
token ids without BOS unless ``add_bos_token=True``. So where the backend tokenizes on this side with a
Hugging Face tokenizer that would not add the BOS the native scorer uses, the BOS text is put in front of the
prompt (lm-eval's tokenizers turn it into the one BOS id). With ``tokenized_requests=False`` the server
tokenizes, and adds BOS by its own model metadata (llama.cpp: the GGUF's ``add_bos_token``).

Requests go out sorted by demonstration tuple (a depth-first order of the prefix trie), so prompts that share
a prefix are adjacent and a server's prefix cache (llama.cpp's slot) holds what the next prompt begins with. A
local model gets one ``loglikelihood`` call per evaluation (lm-eval batches it); an API backend gets one
context per call, ``num_concurrent`` of them in flight per server from our thread pool around lm-eval's own
client, in that order (``icm_plugin.scoring.served``; lm-eval's own concurrent path would sort them by length),
and ``base_url=A|B`` spreads them over several servers. A prompt answered before (the search asks again for
the one it proposed from) comes from a cache of the last ``cache_size`` prompts. vLLM skips its prefix cache
for requests with prompt log-probabilities, which ``loglikelihood`` needs: every prompt is prefilled whole.

``token_forwards`` counts the prompt tokens submitted: per label word for an API backend (two requests), once
per prompt for a local model (lm-eval's hf shares the context's forward between the label words).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import Scorer, ScoreRequest
from icm_plugin.scoring.served import InFlight, api_error, install_checked_parser, is_api, split_base_urls

# model args whose value may be an icm model alias (gemma-3-270m, smollm2-135m): resolved to its folder
_PATH_ARGS = ("pretrained", "tokenizer")


def parse_model_args(model_args: str) -> dict[str, Any]:
    """``k=v,k=v`` -> dict, with lm-eval's own parser (same types and habits as ``lm_eval --model_args``)."""
    from lm_eval.utils import simple_parse_args_string

    for part in filter(None, (model_args or "").split(",")):
        if "=" not in part:
            raise ICMError(f"--model-args: {part!r} is not key=value (write k=v,k=v as for lm_eval --model_args)")
    return simple_parse_args_string(model_args or "")


def resolve_aliases(args: dict[str, Any]) -> dict[str, Any]:
    """``pretrained=gemma-3-270m`` (or ``tokenizer=``) -> the alias's converted transformers folder."""
    from icm_plugin.scoring.models import ALIASES, resolve_model

    out = dict(args)
    for key in _PATH_ARGS:
        value = out.get(key)
        if isinstance(value, str) and value.strip().lower() in ALIASES:
            out[key] = resolve_model(value)
    return out


def backend_display_name(model_type: str, model_args: str) -> str:
    """Short name of the model behind a backend, for run folders: its ``pretrained``/``model``, else the type."""
    from icm_plugin.scoring.models import model_display_name

    args = parse_model_args(model_args)
    for key in ("pretrained", "model", "tokenizer"):
        if isinstance(args.get(key), str) and args[key]:
            return model_display_name(args[key])
    return model_display_name(model_type)


def cli_default_device() -> str:
    """The device ``lm_eval`` passes to a model when ``--device`` is not given (lm-eval 0.4.13: ``cuda:0``, which
    its ``hf`` model takes for the CPU on a machine without that GPU)."""
    import dataclasses

    try:
        from lm_eval.config.evaluate_config import EvaluatorConfig
    except ImportError:  # lm-eval < 0.4.10 has no config dataclass; its later CLI default
        return "cuda:0"
    default = next((f.default for f in dataclasses.fields(EvaluatorConfig) if f.name == "device"), None)
    return default if isinstance(default, str) else "cuda:0"


def make_lm(model_type: str, model_args: str = "", batch_size: int | str | None = None,
            device: str | None = None) -> Any:
    """Build the lm-eval model ``model_type`` from ``model_args`` as ``lm_eval --model --model_args`` does.

    Like lm-eval's command line, the backend also gets ``device`` (``--device``; default: lm-eval's own, see
    ``cli_default_device``) and ``batch_size`` unless ``model_args`` names them (lm-eval itself refuses both).

    Raises:
        ICMError: unknown model type, bad or missing model args, a backend whose package is not installed,
            or a model that cannot be loaded.
    """
    from lm_eval.api.registry import get_model

    try:
        cls = get_model(model_type)
    except (ValueError, KeyError):
        import lm_eval.api.registry as registry

        names = sorted(getattr(registry, "MODEL_REGISTRY", None) or registry.model_registry.keys())
        raise ICMError(f"--model-type {model_type!r} is not an lm-eval model type; choose one of: "
                       f"{', '.join(names)}") from None
    except (ImportError, ModuleNotFoundError) as err:
        raise _missing_package(model_type, err) from None
    args = resolve_aliases(parse_model_args(model_args))
    cli = {"batch_size": batch_size, "device": device or cli_default_device()}
    extra = {k: v for k, v in cli.items() if v is not None and k not in args}
    try:
        return cls.create_from_arg_obj(args, extra)
    except (ImportError, ModuleNotFoundError) as err:
        raise _missing_package(model_type, err) from None
    except TypeError as err:
        raise ICMError(f"--model-args {model_args!r} do not fit lm-eval's {model_type!r} model ({err})") from None
    except (OSError, ValueError, AssertionError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ICMError(f"lm-eval could not build the {model_type!r} model from --model-args {model_args!r}: "
                       f"{first}") from None


def _missing_package(model_type: str, err: Exception) -> ICMError:
    extra = "api" if "completions" in model_type or "chat" in model_type or "api" in str(err) else model_type
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return ICMError(f"--model-type {model_type!r} needs a package that is not installed ({first}): "
                    f"pip install 'lm-eval[{extra}]'")


class LMEvalScorer(Scorer):
    """The ICM scorer over an lm-eval ``LM``: log p(label word | demos, query) from ``loglikelihood``."""

    def __init__(self, lm: Any, label_words: Sequence[str] = (" False", " True"), separator: str = "\n\n",
                 model_type: str = "lm-eval", cache_size: int = 1024, servers: Sequence[Any] = ()):
        self.lm = lm
        self.lms = [lm, *servers]  # one backend per server of the same model (base_url=A|B)
        self.label_words = tuple(label_words)
        self.separator = separator
        self.model_type = model_type
        self.token_forwards = 0
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bos_text = _bos_text(lm)
        self.is_api = is_api(lm)
        # an API backend gets one context per call, in our (trie) order: lm-eval sorts a call's prompts by length
        self.contexts_per_call = 1 if self.is_api else None
        #: prompts in flight per server: lm-eval's num_concurrent, run by our pool (icm_plugin.scoring.served)
        self.concurrency = max(1, int(getattr(lm, "_concurrent", 1))) if self.is_api else 1
        self.max_length = _max_length(lm)
        if self.is_api:
            for backend in self.lms:
                backend._concurrent = 1  # each call goes lm-eval's sequential path: requests + tenacity retries
                install_checked_parser(backend)
            _quiet_api_progress()
        self._in_flight = InFlight(len(self.lms), self.concurrency) if len(self.lms) * self.concurrency > 1 else None
        _warn_bos(lm, model_type)

    @classmethod
    def from_model_type(cls, model_type: str, model_args: str = "", label_words: Sequence[str] = (" False", " True"),
                        separator: str = "\n\n", batch_size: int | str | None = None,
                        device: str | None = None) -> LMEvalScorer:
        """Build the backend by its lm-eval name (see ``make_lm``) and wrap it; ``base_url=A|B|...`` builds one
        backend per server (``served.split_base_urls``)."""
        first, *others = [make_lm(model_type, args, batch_size, device) for args in split_base_urls(model_args)]
        return cls(first, label_words, separator, model_type, servers=others)

    @property
    def name(self) -> str:
        return f"lm-eval:{self.model_type}"

    @property
    def parallel_capacity(self) -> int:
        """How many searches may score at once through this backend (the batch runner's hook)."""
        return self.concurrency

    @property
    def replicas(self) -> list[LMEvalScorer]:
        """One scorer per server (the batch runner runs batches on them at once); just this one for one server."""
        if len(self.lms) == 1:
            return [self]
        out = []
        for backend in self.lms:
            twin = self.fork()
            twin.lm, twin.lms = backend, [backend]
            twin._in_flight = InFlight(1, self.concurrency) if self.concurrency > 1 else None
            out.append(twin)
        return out

    def fork(self) -> LMEvalScorer:
        """A scorer sharing this backend (and its requests in flight) with its own ``token_forwards`` counter
        (one per parallel batch)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin.token_forwards = 0
        twin._cache = OrderedDict()
        return twin

    def prompt(self, request: ScoreRequest) -> str:
        """The full prompt text: [BOS] + each demo + separator + the query (the native scorers' layout)."""
        return self.bos_text + "".join(d + self.separator for d in request.demos) + request.query

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        words = self.label_words
        loglik = np.zeros((len(requests), len(words)))
        todo: dict[str, list[int]] = {}  # prompt -> the requests that need it (a prompt is sent once)
        for r in sorted(range(len(requests)), key=lambda r: (requests[r].demos, requests[r].query)):
            ctx = self.prompt(requests[r])
            hit = self._cache.get(ctx)
            if hit is not None:
                self._cache.move_to_end(ctx)
                loglik[r] = hit
            else:
                todo.setdefault(ctx, []).append(r)
        contexts = list(todo)
        self._count_and_check(contexts)
        if not contexts:
            rows: list = []
        elif self.contexts_per_call is None:  # a local model: one call, lm-eval batches it
            rows = list(self._score(0, contexts))
        elif self._in_flight is None:
            rows = [self._score(0, [ctx])[0] for ctx in contexts]
        else:
            rows = self._in_flight.map(lambda server, ctx: self._score(server, [ctx])[0], contexts)
        for ctx, row in zip(contexts, rows, strict=True):
            loglik[todo[ctx]] = row
            self._remember(ctx, row)
        return loglik - np.logaddexp.reduce(loglik, axis=1, keepdims=True)

    def _score(self, server: int, contexts: Sequence[str]) -> np.ndarray:
        """Label-word log-likelihoods of ``contexts`` from backend ``server``, shape (contexts, label words)."""
        from lm_eval.api.instance import Instance

        words = self.label_words
        instances = [Instance("loglikelihood", {}, (ctx, w), idx=k * len(words) + j)
                     for k, ctx in enumerate(contexts) for j, w in enumerate(words)]
        results = self._call(instances, self.lms[server])
        return np.array([[float(results[k * len(words) + j][0]) for j in range(len(words))]
                         for k in range(len(contexts))])

    def _remember(self, ctx: str, row: np.ndarray) -> None:
        # the search asks again for a prompt it proposed from (and a labelling it revisits): answer from here
        self._cache[ctx] = row
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    # ---- helpers ------------------------------------------------------------------------------------
    def _count_and_check(self, contexts: Sequence[str]) -> None:
        encode = getattr(self.lm, "tok_encode", None)
        for ctx in contexts:
            try:
                n = len(encode(ctx)) if encode is not None and getattr(self.lm, "tokenizer", None) is not None else None
            except Exception:  # noqa: BLE001 - a backend without a local tokenizer: count characters
                n = None
            n = n if n is not None else len(ctx) // 4
            if self.max_length is not None and n + 1 > self.max_length:
                raise ICMError(
                    f"context too long: a prompt of {n} tokens exceeds the backend's max_length {self.max_length} "
                    "(lm-eval would cut it from the left); label a smaller pool (--limit or --batch-size) or raise "
                    "max_length in --model-args if the model allows it")
            self.token_forwards += self._forwards(n)

    def _forwards(self, n_tokens: int) -> int:
        """Tokens one prompt of ``n_tokens`` costs: an API request per label word; a local model forwards the
        shared context once (lm-eval's logits cache)."""
        words = len(self.label_words)
        return (n_tokens + 1) * words if self.is_api else n_tokens + words

    def _call(self, instances: list, lm: Any) -> list:
        try:
            return lm.loglikelihood(instances, disable_tqdm=True)
        except ICMError:
            raise
        except NotImplementedError:
            raise ICMError(f"lm-eval model type {self.model_type!r} does not implement loglikelihood; ICM needs "
                           "log-probabilities: use hf, vllm, local-completions or gguf") from None
        except Exception as err:  # noqa: BLE001 - the backends raise their HTTP/client errors as they are
            mapped = api_error(lm, err)
            if mapped is None:
                raise
            raise mapped from None


def _hf_tokenizer(lm: Any) -> Any | None:
    tok = getattr(lm, "tokenizer", None)
    return tok if getattr(tok, "bos_token_id", None) is not None and isinstance(getattr(tok, "bos_token", None), str) else None


def _bos_text(lm: Any) -> str:
    """The BOS text to put in front of prompts so the backend's tokens start with the native scorer's BOS."""
    tok = _hf_tokenizer(lm)
    if tok is None or getattr(lm, "tokenized_requests", True) is False:
        return ""  # no local tokenizer, or the server tokenizes: the backend's own BOS habit
    try:
        ids = lm.tok_encode("Question")
    except Exception:  # noqa: BLE001
        return ""
    return "" if ids and ids[0] == tok.bos_token_id else tok.bos_token


def _warn_bos(lm: Any, model_type: str) -> None:
    tok = _hf_tokenizer(lm)
    if tok is None or getattr(lm, "tokenized_requests", True) is not False:
        return
    if tok("Question")["input_ids"][:1] != [tok.bos_token_id]:
        return
    import sys

    print(f"icm: note: {model_type} with tokenized_requests=False: the server tokenizes the prompts and must add "
          f"the BOS token {tok.bos_token!r} itself (llama.cpp and vLLM do, for models that need it)",
          file=sys.stderr)


def _max_length(lm: Any) -> int | None:
    try:
        value = lm.max_length
    except Exception:  # noqa: BLE001 - some backends compute it from a model they load lazily
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _quiet_api_progress() -> None:
    """lm-eval's API models draw a progress bar per call whatever ``disable_tqdm`` says; ICM calls them once
    per prompt and has its own bar, so their bars are switched off (in this process, once)."""
    import functools

    import lm_eval.models.api_models as api_models

    if getattr(api_models.tqdm, "icm_quiet", False):
        return
    quiet = functools.partial(api_models.tqdm, disable=True)
    quiet.icm_quiet = True  # type: ignore[attr-defined]
    api_models.tqdm = quiet
    gather = api_models.tqdm_asyncio.gather

    class QuietAsync:
        @staticmethod
        def gather(*tasks, **kwargs):
            return gather(*tasks, **{**kwargs, "disable": True})

    api_models.tqdm_asyncio = QuietAsync
