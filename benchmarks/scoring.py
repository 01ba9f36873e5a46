"""Cost of one evaluation of mutual predictability P(D): reference vs prefix-sharing scorer, side by side.

    python benchmarks/scoring.py [--sizes 16 32 64] [--large] [--model gemma-3-270m] [--dtype float32]

For each n: token-forwards and wall seconds of both scorers on the same leave-one-out requests (the
divide-and-conquer demonstration order), their ratio, the max |difference| of the per-example
log-probabilities, the spread a different demonstration order causes (another seed's order), and the raw
forward throughput of the model (one long forward) with the fast scorer's achieved tokens/s as a fraction.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.method.objective import loo_requests
from icm_plugin.scoring.models import load_model
from icm_plugin.scoring.prefix import PrefixSharingScorer
from icm_plugin.scoring.reference import ReferenceScorer


def raw_throughput(model, tokenizer, n_tokens: int = 1024) -> float:
    ids = torch.tensor([[tokenizer.bos_token_id or 0] + list(range(1000, 1000 + n_tokens - 1))])
    best = float("inf")
    with torch.inference_mode():
        for _ in range(3):
            t = time.perf_counter()
            model.get_decoder()(input_ids=ids, use_cache=True)  # the same forward the scorers run
            best = min(best, time.perf_counter() - t)
    return n_tokens / best


def random_labelled_requests(task, n: int):
    """The first n claims, random labels and a random demonstration order (both seeded by n), and their
    leave-one-out requests: (examples, labels, order, requests). Shared with benchmarks/gpu_scaling.py."""
    examples = load_examples(None, task, n)
    rng = np.random.default_rng(n)
    labels = [int(y) for y in rng.integers(0, 2, len(examples))]
    order = [int(i) for i in rng.permutation(len(examples))]
    return examples, labels, order, loo_requests(task, examples, labels, order)[1]


def timed(scorer, reqs):
    before = scorer.token_forwards
    t = time.perf_counter()
    out = scorer.label_logprobs(reqs)
    return out, scorer.token_forwards - before, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--large", action="store_true", help="add n = 128 and 256")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reference-sample", type=int, default=0,
                    help="above n=64, time the reference on this many evenly spaced prompts and scale by n / sample "
                         "(every prompt holds n-1 demonstrations, so each costs about the same); 0 = all prompts")
    args = ap.parse_args()
    sizes = args.sizes + ([128, 256] if args.large else [])
    task = get_task("facts")
    model, tok = load_model(args.model, dtype=args.dtype)
    raw = raw_throughput(model, tok)
    print(f"model {args.model} ({args.dtype}), torch threads {torch.get_num_threads()}; raw forward: {raw:.0f} tokens/s (1024-token forward)")
    print("| n | reference tokens | reference s | fast tokens | fast s | token ratio | time ratio | max abs diff (nats) "
          "| order spread max / mean (nats) | label gap mean (nats) | fast tok/s | % of raw |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        examples, labels, order, reqs = random_labelled_requests(task, n)
        fast = PrefixSharingScorer(model, tok, task.label_words)
        b, fast_tokens, fast_s = timed(fast, reqs)
        other_order = [int(i) for i in np.random.default_rng(n + 1).permutation(len(examples))]
        _, reqs2 = loo_requests(task, examples, labels, other_order)
        labelled2 = [i for i in other_order if labels[i] is not None]
        b2 = dict(zip(labelled2, timed(fast, reqs2)[0], strict=True))
        labelled = [i for i in order if labels[i] is not None]
        spreads = [abs(b[k][labels[i]] - b2[i][labels[i]]) for k, i in enumerate(labelled)]
        # what the search weighs: how far an example's label log-probability is from the other label's
        gap = float(np.mean([abs(b[k][1] - b[k][0]) for k in range(len(labelled))]))
        ref = ReferenceScorer(model, tok, task.label_words)
        sample = list(range(len(reqs)))
        if args.reference_sample and n > 64:
            sample = sorted({int(x) for x in np.linspace(0, len(reqs) - 1, args.reference_sample)})
        a, ref_tokens, ref_s = timed(ref, [reqs[k] for k in sample])
        diff = f"{np.abs(a - b[sample]).max():.2e}"
        if len(sample) < len(reqs):
            scale = len(reqs) / len(sample)
            ref_tokens, ref_s = int(ref_tokens * scale), ref_s * scale
            diff += f" ({len(sample)} prompts; reference scaled x{scale:.0f})"
        print(f"| {len(examples)} | {ref_tokens} | {ref_s:.1f} | {fast_tokens} | {fast_s:.1f} | {ref_tokens / fast_tokens:.1f}x "
              f"| {ref_s / fast_s:.1f}x | {diff} | {max(spreads):.3f} / {np.mean(spreads):.3f} | {gap:.3f} "
              f"| {fast_tokens / fast_s:.0f} | {100 * fast_tokens / fast_s / raw:.0f}% |",
              flush=True)


if __name__ == "__main__":
    main()
