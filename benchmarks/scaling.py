"""How ICM's cost grows with pool size, batched (--batch-size) and not, and what 100k claims cost on a vLLM H100.

    python benchmarks/scaling.py [--model smollm2-135m] [--measure 16 32 64 128] [--account 32 64 128 256]
                                 [--pools 256 1024 4096 100000] [--batch-size 256] [--h100-tokens-per-s 1e5]
                                 [--out docs/scaling.json]

Three parts, each labelled as what it is:

1. measured (this machine, the real model): one evaluation of P(D) with n labelled examples (every example's
   leave-one-out prompt) by the native prefix-sharing scorer: seconds, token-forwards, tokens/s.
2. counted (exact, no model): a whole ICM search (3n steps, the default) over n facts claims, driven by a
   scripted scorer, with the token-forwards each backend would spend for exactly the requests the search made:
   the prefix scorer's trie tokens, and the prompt tokens an lm-eval API backend (vLLM, llama.cpp) prefills:
   every prompt twice (" True" and " False"), whole, because prompt log-probabilities bypass vLLM's prefix cache.
   The search path of the real model differs; the counts per step do not depend much on it.
3. projected: pool sizes N in batches of --batch-size: batches x the counted cost of one batch; wall time =
   tokens / throughput (this machine: measured in part 1; vLLM H100: --h100-tokens-per-s, a stated assumption).
   Sizes not counted in part 2 are extrapolated by fitting c * n^2 * log2(n) (prefix) and c * n^3 (API: 3n steps
   x 2 n^2 L tokens per evaluation) to it; so is one unbatched search over N.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from icm_plugin.apps.batches import split_by_group
from icm_plugin.core.examples import Example
from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.method.objective import loo_requests
from icm_plugin.method.search import ICM, ICMConfig
from icm_plugin.scoring.base import Scorer, ScoreRequest
from icm_plugin.scoring.prefix import build_trie, trie_tokens
from icm_plugin.scoring.tokens import PromptTokens

TASK = get_task("facts")


class CountingScorer(Scorer):
    """Scripted scores (from gold, with a pull towards the demonstrations' majority) and exact token counts.

    ``token_forwards``: what the prefix-sharing scorer forwards for these requests (its trie).
    ``api_tokens``: what an echo/prompt-logprobs API prefills: (prompt + label word) per label word, for each
    prompt not already answered (the lm-eval adapter keeps a cache of 1,024 prompts).
    """

    def __init__(self, tokens: PromptTokens, truth: dict[str, int], herd: float = 1.0):
        self.tokens = tokens
        self.truth = truth
        self.herd = herd
        self.label_words = TASK.label_words
        self.token_forwards = 0
        self.api_tokens = 0
        self.calls = 0
        self.requests = 0
        self.seen: OrderedDict[tuple, None] = OrderedDict()

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        self.calls += 1
        self.requests += len(requests)
        segments = [self.tokens.segments(r) for r in requests]
        self.token_forwards += trie_tokens(build_trie(segments))
        for r, segs in zip(requests, segments, strict=True):
            key = (r.demos, r.query)
            if key in self.seen:
                self.seen.move_to_end(key)
                continue
            self.seen[key] = None
            if len(self.seen) > 1024:
                self.seen.popitem(last=False)
            self.api_tokens += len(self.label_words) * (sum(map(len, segs)) + 1)
        out = np.zeros((len(requests), 2))
        for k, r in enumerate(requests):
            frac = np.mean([d.endswith(" True") for d in r.demos]) if r.demos else 0.5
            z = (1 if self.truth[r.query] else -1) + self.herd * (frac - 0.5)
            out[k] = [-np.logaddexp(0, z), -np.logaddexp(0, -z)]
        return out


def facts_pool(n: int) -> list[Example]:
    """n facts claims (whole questions); beyond the 520 packaged ones, copies with new ids."""
    base = load_examples(None, TASK, None)
    out: list[Example] = []
    copy = 0
    while len(out) < n:
        for e in base:
            out.append(Example(id=f"{e.id}#{copy}", question=e.question, choice=e.choice,
                               consistency_id=f"{e.consistency_id}#{copy}", label=e.label))
        copy += 1
    return load_examples_like(out, n)


def load_examples_like(examples: list[Example], n: int) -> list[Example]:
    from icm_plugin.core.loaders import limit_pool

    return limit_pool(examples, n)


def measure_evaluation(model_name: str, sizes: Sequence[int], dtype: str) -> list[dict]:
    from icm_plugin.scoring.models import load_model
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    model, tokenizer = load_model(model_name, dtype=dtype, device="cpu")
    scorer = PrefixSharingScorer(model, tokenizer, TASK.label_words)
    rows = []
    for n in sizes:
        pool = facts_pool(n)
        rng = np.random.default_rng(n)
        labels = [int(y) for y in rng.integers(0, 2, len(pool))]
        _, reqs = loo_requests(TASK, pool, labels, [int(i) for i in rng.permutation(len(pool))])
        before, t = scorer.token_forwards, time.perf_counter()
        scorer.label_logprobs(reqs)
        seconds = time.perf_counter() - t
        forwards = scorer.token_forwards - before
        rows.append({"n": len(pool), "seconds": round(seconds, 2), "token_forwards": forwards,
                     "tokens_per_s": round(forwards / seconds, 1),
                     "prompt_tokens_max": max(len(scorer.tokens.full(r)) for r in reqs)})
        print(f"measured  n={len(pool):5d}  one evaluation: {seconds:7.1f} s  {forwards:9d} token-forwards  "
              f"{forwards / seconds:7.0f} tok/s", flush=True)
    return rows


def count_search(tokens: PromptTokens, n: int, seed: int = 0) -> dict:
    pool = facts_pool(n)
    scorer = CountingScorer(tokens, {TASK.prompt(e): e.label for e in pool})
    t = time.perf_counter()
    icm = ICM(scorer, TASK, ICMConfig(seed=seed)).fit(pool, progress=False)
    row = {"n": len(pool), "steps": icm.n_iter_, "evaluations": scorer.calls, "requests": scorer.requests,
           "prefix_token_forwards": scorer.token_forwards, "api_prompt_tokens": scorer.api_tokens,
           "count_seconds": round(time.perf_counter() - t, 1)}
    print(f"counted   n={row['n']:5d}  {row['steps']} steps, {row['evaluations']} scoring calls: "
          f"prefix {row['prefix_token_forwards']:.3e} token-forwards, API {row['api_prompt_tokens']:.3e} prompt tokens",
          flush=True)
    return row


def growth(n: float, key: str) -> float:
    """How one search's cost grows with its pool: 3n steps x (prefix: n L log2 n | API: 2 n^2 L) per evaluation."""
    return n * n * math.log2(n) if key == "prefix_token_forwards" else n ** 3


def fit_c(rows: list[dict], key: str) -> float:
    """Least-squares c in cost = c * growth(n) over the counted searches."""
    x = np.array([growth(r["n"], key) for r in rows])
    y = np.array([r[key] for r in rows], dtype=float)
    return float((x @ y) / (x @ x))


def project(pools: Sequence[int], batch_size: int, counted: list[dict], tok_s_here: float, tok_s_h100: float,
            mean_demo_tokens: float, context: int) -> list[dict]:
    exact = {r["n"]: r for r in counted}
    fits = {key: fit_c(counted, key) for key in ("prefix_token_forwards", "api_prompt_tokens")}

    def one_search(n: int, key: str) -> float:  # counted where we counted that size, else the fit
        return exact[n][key] if n in exact else fits[key] * growth(n, key)

    rows = []
    for n in pools:
        sizes = [len(b) for b in split_by_group(facts_pool(n), batch_size)] if n <= 4096 else \
            [n / math.ceil(n / batch_size)] * math.ceil(n / batch_size)
        prefix = sum(one_search(round(k), "prefix_token_forwards") for k in sizes)
        api = sum(one_search(round(k), "api_prompt_tokens") for k in sizes)
        one_prefix, one_api = one_search(n, "prefix_token_forwards"), one_search(n, "api_prompt_tokens")
        rows.append({
            "pool": n, "batches": len(sizes),
            "batched_prefix_token_forwards": prefix, "batched_api_prompt_tokens": api,
            "batched_hours_here_prefix": prefix / tok_s_here / 3600,
            "batched_hours_h100_vllm": api / tok_s_h100 / 3600,
            "unbatched_prefix_token_forwards": one_prefix, "unbatched_api_prompt_tokens": one_api,
            "unbatched_hours_here_prefix": one_prefix / tok_s_here / 3600,
            "unbatched_prompt_tokens": round((n - 1) * mean_demo_tokens),
            "unbatched_fits_context": (n - 1) * mean_demo_tokens < context,
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--measure", type=int, nargs="*", default=[16, 32, 64, 128])
    ap.add_argument("--account", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--pools", type=int, nargs="+", default=[256, 1024, 4096, 100_000])
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--h100-tokens-per-s", type=float, default=1e5,
                    help="prompt tokens/s one vLLM H100 prefills with prompt log-probabilities (an assumption "
                         "unless you measured it)")
    ap.add_argument("--out", default=None, help="write every figure as JSON here")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from icm_plugin.scoring.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    tokens = PromptTokens(tokenizer, TASK.label_words, "\n\n")
    demo_tokens = float(np.mean([len(tokens.demo(TASK.demonstration(e, 1))) for e in facts_pool(520)]))
    measured = measure_evaluation(args.model, args.measure, args.dtype) if args.measure else []
    counted = [count_search(tokens, n) for n in args.account]
    tok_s_here = measured[-1]["tokens_per_s"] if measured else float("nan")
    projected = project(args.pools, args.batch_size, counted, tok_s_here, args.h100_tokens_per_s, demo_tokens,
                        int(tokenizer.model_max_length))
    print(f"\nprojected (batch {args.batch_size}; here: {tok_s_here:.0f} tok/s measured; "
          f"H100 vLLM: {args.h100_tokens_per_s:.0f} prompt tok/s assumed)")
    for r in projected:
        print(f"  N={r['pool']:6d}  batches={r['batches']:4d}  prefix {r['batched_prefix_token_forwards']:.2e} tf "
              f"({r['batched_hours_here_prefix']:.1f} h here)  API {r['batched_api_prompt_tokens']:.2e} tokens "
              f"({r['batched_hours_h100_vllm']:.1f} h on H100)  unbatched prefix {r['unbatched_prefix_token_forwards']:.2e}"
              f" fits={r['unbatched_fits_context']}")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "model": args.model, "dtype": args.dtype, "mean_demo_tokens": demo_tokens,
            "batch_size": args.batch_size, "h100_tokens_per_s_assumed": args.h100_tokens_per_s,
            "measured": measured, "counted": counted, "projected": projected}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
