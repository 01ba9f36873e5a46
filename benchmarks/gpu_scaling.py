"""What scoring costs on a GPU (or a CPU): raw prefill throughput, one evaluation of P, and search steps, measured.

    python benchmarks/gpu_scaling.py --tokenizer DIR [--archs smollm2-135m gemma-3-270m llama-3.1-8b]
        [--sizes 64 128 256 512] [--layout groups|examples] [--search-pool 256 --search-steps 30] [--json out.json]
    python benchmarks/gpu_scaling.py --tokenizer TINY_DIR --device cpu --dtype float32 --archs tiny-llama \
        --sizes 8 16 --raw 2 64        # the CPU smoke run the tests make (tests/test_gpu_scaling_benchmark.py)

Models are built from their published configurations with random weights, in bfloat16, on the GPU: the cost
of a forward does not depend on the weights, and a machine without network access (the lent GPU machine
here) can neither download the checkpoints nor take them over a 64 MiB transfer. Prompts are real: the
packaged ``facts`` claims, laid out exactly as ``icm label`` lays them out, tokenized by ``--tokenizer``
(SmolLM2's tokenizer for every architecture, so token counts are comparable across rows).

For each architecture it prints:
- raw prefill throughput: tokens/s of batched whole-prompt forwards (decoder only), the most an engine that
  prefills every prompt whole (lm-eval's ``loglikelihood`` on vLLM: prompt log-probabilities skip its prefix
  cache) could reach on this GPU with these kernels;
- for each n: one evaluation of P with the native prefix-sharing scorer (seconds, token-forwards, forwards,
  tokens/s), the level-batched scorer (``--scorer levels``: seconds, forwards, max |diff| from the prefix
  scorer's log-probabilities) and the batched scorer, next to the same evaluation as whole prompts (their
  token count, and seconds at the measured raw prefill rate). ``--layout groups`` (the default) builds the
  requests as the objective does, a group's demonstrations being every other consistency group
  (``bootstrap.group_loo_requests``); ``--layout examples`` is plain leave-one-out per claim, as measured first;
- with ``--search-pool N``: the first ``--search-steps`` steps of a real ICM search over N claims (the
  scores of a random model drive it, so its path is not a real model's; the cost per scoring call is real).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scoring import random_labelled_requests  # benchmarks/scoring.py (this script's folder is on sys.path)

from icm_plugin.core.examples import group_key
from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.bootstrap import group_loo_requests
from icm_plugin.method.search import ICM, ICMConfig
from icm_plugin.scoring.batched import BatchedScorer
from icm_plugin.scoring.levels import LevelBatchedScorer
from icm_plugin.scoring.prefix import PrefixSharingScorer

ARCHS = {
    # HuggingFaceTB/SmolLM2-135M(-Instruct) config.json
    "smollm2-135m": dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                         max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True),
    # google/gemma-3-270m config.json (15 of 18 layers slide over 512 tokens)
    "gemma-3-270m": dict(model_type="gemma3_text", hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                         num_attention_heads=4, num_key_value_heads=1, head_dim=256, vocab_size=262144,
                         max_position_embeddings=32768, sliding_window=512,
                         layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3),
    # meta-llama/Llama-3.1-8B config.json (no rope scaling: it changes no cost)
    "llama-3.1-8b": dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                         max_position_embeddings=131072, rope_theta=500000.0),
    # test sizes, so the script itself runs in the test suite on a CPU
    "tiny-llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192),
    "tiny-gemma3": dict(model_type="gemma3_text", hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=8192,
                        sliding_window=16, layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
}


def build(arch: str, device: str, dtype: torch.dtype = torch.bfloat16, vocab_size: int | None = None):
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(ARCHS[arch])
    if arch.startswith("tiny-") and vocab_size:  # the tiny tokenizer's ids must fit
        spec["vocab_size"] = vocab_size
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    # eager for Gemma, as icm_plugin.scoring.models.load_model sets it; sdpa (transformers' default) otherwise
    config._attn_implementation = "eager" if config.model_type.startswith("gemma") else "sdpa"
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def raw_prefill(model, device: str, length: int, batch: int, reps: int = 3) -> float:
    vocab = model.config.vocab_size
    ids = torch.randint(min(1000, vocab // 2), min(30000, vocab), (batch, length), device=device)
    decoder = model.get_decoder()
    decoder(input_ids=ids[:, :64])  # warm-up
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        decoder(input_ids=ids, use_cache=False)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return batch * length / best


def timed_evaluation(scorer, reqs, device: str) -> tuple[float, int, int]:
    """(seconds, token-forwards, forwards) of one ``label_logprobs`` call, after a two-request warm-up."""
    scorer.label_logprobs(reqs[:2])
    tokens, forwards = scorer.token_forwards, scorer.forwards
    sync(device)
    t = time.perf_counter()
    scorer.label_logprobs(reqs)
    sync(device)
    return time.perf_counter() - t, scorer.token_forwards - tokens, scorer.forwards - forwards


def group_requests(task, n: int):
    """The first n claims, random labels, a random order of their consistency groups (all seeded by n), and the
    objective's requests: each example with every OTHER group as demonstrations. (examples, groups, requests)."""
    examples = load_examples(None, task, n)
    rng = np.random.default_rng(n)
    labels = [int(y) for y in rng.integers(0, 2, len(examples))]
    groups = sorted({group_key(e) for e in examples})
    order = [groups[i] for i in rng.permutation(len(groups))]
    return examples, groups, group_loo_requests(task, examples, labels, order)[1]


def one_evaluation(model, tok, task, n: int, device: str, layout: str = "groups", batched: bool = True) -> dict:
    if layout == "groups":
        examples, groups, reqs = group_requests(task, n)
    else:
        examples, _, _, reqs = random_labelled_requests(task, n)
        groups = examples
    scorer = PrefixSharingScorer(model, tok, task.label_words)
    seconds, tokens, forwards = timed_evaluation(scorer, reqs, device)
    levels = LevelBatchedScorer(model, tok, task.label_words)
    l_seconds, _, l_forwards = timed_evaluation(levels, reqs, device)
    diff = float(np.abs(levels.label_logprobs(reqs) - scorer.label_logprobs(reqs)).max())
    b_seconds, b_forwards = (timed_evaluation(BatchedScorer(model, tok, task.label_words), reqs, device)[::2]
                             if batched else (float("nan"), 0))
    lengths = [len(scorer.tokens.full(r)) for r in reqs]
    return {"n": len(examples), "groups": len(groups), "layout": layout, "seconds": seconds, "token_forwards": tokens,
            "forwards": forwards, "tokens_per_s": tokens / seconds, "levels_seconds": l_seconds,
            "levels_forwards": l_forwards, "levels_tokens_per_s": tokens / l_seconds, "levels_max_diff": diff,
            "whole_prompt_tokens": sum(lengths), "batched_seconds": b_seconds, "batched_forwards": b_forwards,
            "longest_prompt": max(lengths)}


def search_steps(model, tok, task, pool: int, steps: int, device: str, scorer_cls=PrefixSharingScorer) -> dict:
    examples = load_examples(None, task, pool)
    scorer = scorer_cls(model, tok, task.label_words)
    calls = {"n": 0}
    inner = scorer.label_logprobs

    def counted(reqs):
        calls["n"] += 1
        return inner(reqs)

    scorer.label_logprobs = counted
    last: dict = {}

    class Enough(Exception):
        pass

    def on_step(record: dict) -> None:
        last.update(record)
        if record.get("iteration", 0) >= steps:
            raise Enough  # stop before the completion pass: the steps alone are measured

    icm = ICM(scorer, task, ICMConfig(iterations=steps + 1, seed=0))
    sync(device)
    t = time.perf_counter()
    try:
        icm.fit(examples, progress=False, on_step=on_step)
    except Enough:
        pass
    sync(device)
    seconds = time.perf_counter() - t
    return {"scorer": scorer_cls.__name__, "pool": len(examples), "steps": steps, "seconds": seconds, "scoring_calls": calls["n"],
            "token_forwards": scorer.token_forwards, "labelled": last.get("labelled"),
            "seconds_per_step": seconds / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="a tokenizer folder (SmolLM2's)")
    ap.add_argument("--archs", nargs="+", default=["smollm2-135m", "gemma-3-270m", "llama-3.1-8b"], choices=list(ARCHS))
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    ap.add_argument("--search-pool", type=int, default=0)
    ap.add_argument("--search-steps", type=int, default=30)
    ap.add_argument("--search-archs", nargs="+", default=["smollm2-135m"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"],
                    help="model dtype (float32 is the fast one on most CPUs)")
    ap.add_argument("--layout", default="groups", choices=["groups", "examples"],
                    help="groups: each example's demonstrations are the other consistency groups (the objective's "
                         "layout); examples: plain leave-one-out per claim")
    ap.add_argument("--raw", type=int, nargs=2, default=[8, 4096], metavar=("BATCH", "LENGTH"),
                    help="the batched prefill that measures raw throughput")
    ap.add_argument("--cudnn-sdp", action="store_true",
                    help="leave cuDNN attention on (it plans a graph for every new shape: ~70 ms per forward here)")
    ap.add_argument("--skip-batched", action="store_true",
                    help="leave out the batched scorer's evaluation (n^2 tokens: slow on a CPU)")
    ap.add_argument("--levels-waste", type=float, default=None,
                    help="LevelBatchedScorer.key_waste: cut a level where its forward would gather more than this "
                         "multiple of its longest prompt in keys (default: one forward per level)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    LevelBatchedScorer.key_waste = args.levels_waste
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    if args.device.startswith("cuda") and not args.cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)
    task = get_task("facts")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    dtype = getattr(torch, args.dtype)
    print(f"device {name}; torch {torch.__version__}; {args.dtype}, random weights; threads {torch.get_num_threads()}; "
          f"layout {args.layout}; levels key_waste {args.levels_waste}; cuDNN attention {'on' if args.cudnn_sdp else 'off'}", flush=True)
    results = []
    for arch in args.archs:
        model = build(arch, args.device, dtype, len(tok))
        batch, length = args.raw
        raw = raw_prefill(model, args.device, length, batch)
        raw1 = raw_prefill(model, args.device, 1024, 1)
        print(f"\n## {arch}: raw prefill {raw:,.0f} tokens/s ({batch} x {length:,} tokens), {raw1:,.0f} tokens/s (1 x 1,024)",
              flush=True)
        print("| n (groups) | prefix scorer s | token-forwards | forwards | tokens/s | levels scorer s (forwards) "
              "| levels tokens/s | levels max diff | whole-prompt tokens | whole prompts at raw rate, s "
              "| batched scorer s (forwards) | longest prompt |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        row = {"arch": arch, "raw_prefill_tokens_per_s": raw, "raw_single_1024_tokens_per_s": raw1, "evaluations": []}
        for n in args.sizes:
            try:
                ev = one_evaluation(model, tok, task, n, args.device, args.layout, not args.skip_batched)
            except ICMError as e:
                print(f"| {n} | {e} |")
                continue
            row["evaluations"].append(ev)
            print(f"| {ev['n']} ({ev['groups']}) | {ev['seconds']:.2f} | {ev['token_forwards']:,} | {ev['forwards']:,} "
                  f"| {ev['tokens_per_s']:,.0f} | {ev['levels_seconds']:.2f} ({ev['levels_forwards']}) "
                  f"| {ev['levels_tokens_per_s']:,.0f} | {ev['levels_max_diff']:.1e} "
                  f"| {ev['whole_prompt_tokens']:,} | {ev['whole_prompt_tokens'] / raw:.2f} "
                  f"| {ev['batched_seconds']:.2f} ({ev['batched_forwards']}) | {ev['longest_prompt']:,} |", flush=True)
        if args.search_pool and arch in args.search_archs:
            for cls in (LevelBatchedScorer, BatchedScorer, PrefixSharingScorer):
                s = search_steps(model, tok, task, args.search_pool, args.search_steps, args.device, cls)
                row.setdefault("search", []).append(s)
                print(f"{s['scorer']}: search over {s['pool']} claims: {s['steps']} steps in {s['seconds']:.1f} s "
                      f"({s['seconds_per_step']:.2f} s/step), {s['scoring_calls']} scoring calls, "
                      f"{s['token_forwards']:,} token-forwards, {s['labelled']} labelled", flush=True)
        results.append(row)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "dtype": args.dtype, "layout": args.layout,
                   "levels_key_waste": args.levels_waste,
                   "threads": torch.get_num_threads(), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
