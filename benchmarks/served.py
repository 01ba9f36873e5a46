"""The served path measured against real llama.cpp servers on this machine, and against the native scorer.

    python benchmarks/served.py [--alias smollm2-135m] [--n 8] [--concurrency 1 2] [--batch 4 --iterations 3]
        [--json docs/served.json]

Starts two llama-cpp-python servers (``python -m llama_cpp.server``, ``--logits_all True``, one thread each,
``bash .ci/llamacpp.sh`` installs it) serving the alias's GGUF, then:

1. one evaluation of P (the objective's group layout over the first ``--n`` packaged facts claims) through
   ``--model-type local-completions``: one server with each ``--concurrency``, and both servers
   (``base_url=A|B``): seconds, contexts/s, HTTP requests/s (one per label word) and prompt tokens/s, and
   the max |diff| of the label log-probabilities from the native prefix scorer on the alias's transformers
   folder (float32; the servers multiply Q4 weights with quantised kernels);
2. ``icm label --batch-size``'s runner on two batches of ``--batch`` claims (``--iterations`` steps each):
   one server doing both, then the two servers at once; wall seconds, their ratio, and whether the labels agree.

``uptime`` is recorded before and after: the servers share the machine's cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from gpu_scaling import group_requests  # benchmarks/gpu_scaling.py (this script's folder is on sys.path)

from icm_plugin.batches import BatchRunner, split_by_group
from icm_plugin.loaders import load_examples
from icm_plugin.models import ALIASES, load_model, resolve_model
from icm_plugin.scoring.llamacpp_server import start_llamacpp_server, stop_server
from icm_plugin.scoring.lmeval_backend import LMEvalScorer
from icm_plugin.scoring.prefix import PrefixSharingScorer
from icm_plugin.search import ICMConfig
from icm_plugin.tasks import get_task


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def model_args(urls: list[str], alias: str, concurrency: int) -> str:
    # llama-cpp-python's server takes prompts as text only: it tokenizes (tokenizer= only measures contexts)
    return ",".join([f"base_url={'|'.join(urls)}", f"model={alias}", "tokenizer_backend=huggingface",
                     f"tokenizer={alias}", "tokenized_requests=False", "max_retries=3", "timeout=3600",
                     "max_length=4096", f"num_concurrent={concurrency}"])


def served_scorer(args: str, words, alias: str) -> LMEvalScorer:
    scorer = LMEvalScorer.from_model_type("local-completions", args, words)
    if not ALIASES[alias].add_bos:
        # the GGUF adds no BOS (SmolLM2) but the native scorer starts every prompt with one: its text in front,
        # which llama.cpp tokenizes as the special token, so both score the same token ids
        scorer.bos_text = scorer.lm.tokenizer.bos_token
    return scorer


def served_evaluation(args: str, reqs, words, alias: str) -> tuple[dict, np.ndarray]:
    scorer = served_scorer(args, words, alias)
    t = time.perf_counter()
    out = scorer.label_logprobs(reqs)
    seconds = time.perf_counter() - t
    contexts = len({scorer.prompt(r) for r in reqs})
    return {"seconds": seconds, "contexts": contexts, "contexts_per_s": contexts / seconds,
            "http_requests_per_s": contexts * len(words) / seconds, "prompt_tokens": scorer.token_forwards,
            "prompt_tokens_per_s": scorer.token_forwards / seconds}, out


def two_batches(scorer, task, pool, batch: int, iterations: int, root: Path) -> tuple[float, list[int]]:
    batches = split_by_group(pool, batch)
    runner = BatchRunner(scorer, task, ICMConfig(seed=0, iterations=iterations))
    t = time.perf_counter()
    summaries = runner.run(batches, {}, root / "batches")
    seconds = time.perf_counter() - t
    labels = {}
    for b, _ in enumerate(batches):
        for line in (root / "batches" / f"{b:03d}" / "labels.jsonl").read_text().splitlines():
            row = json.loads(line)
            labels[row["id"]] = row["label"]
    assert len(summaries) == len(batches)
    return seconds, [labels[e.id] for e in pool]


def evaluations(task, args, urls: list[str]) -> dict:
    """Part 1: the native scorer, then the served path with each concurrency on one server and on both."""
    examples, groups, reqs = group_requests(task, args.n)
    model, tok = load_model(args.alias, dtype="float32", device="cpu")
    native = PrefixSharingScorer(model, tok, task.label_words)
    t = time.perf_counter()
    ref = native.label_logprobs(reqs)
    seconds = time.perf_counter() - t
    out: dict = {"native": {"seconds": seconds, "token_forwards": native.token_forwards,
                            "tokens_per_s": native.token_forwards / seconds}, "evaluations": []}
    print(f"native prefix scorer: n={len(examples)} ({len(groups)} groups) {seconds:.1f} s, "
          f"{native.token_forwards} token-forwards", flush=True)
    print("| servers | concurrency | seconds | contexts/s | HTTP requests/s | prompt tokens/s | max diff vs native |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_servers, conc in [(1, c) for c in args.concurrency] + [(2, 1)]:
        row, scores = served_evaluation(model_args(urls[:n_servers], args.alias, conc), reqs, task.label_words,
                                        args.alias)
        row.update(servers=n_servers, concurrency=conc, max_diff=float(np.abs(scores - ref).max()),
                   same_argmax=bool((scores.argmax(1) == ref.argmax(1)).all()))
        out["evaluations"].append(row)
        print(f"| {n_servers} | {conc} | {row['seconds']:.1f} | {row['contexts_per_s']:.2f} "
              f"| {row['http_requests_per_s']:.2f} | {row['prompt_tokens_per_s']:.0f} | {row['max_diff']:.3f} |",
              flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alias", default="smollm2-135m", choices=sorted(ALIASES))
    ap.add_argument("--n", type=int, default=8, help="claims in the evaluation of P")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=4, help="claims per batch for the two-batch run (0: skip it)")
    ap.add_argument("--iterations", type=int, default=3, help="search steps per batch")
    ap.add_argument("--threads", type=int, default=1, help="threads per server")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=True,
                    help="part 1, the evaluations (--no-evaluate: only the two-batch run)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    task = get_task("facts")
    alias = ALIASES[args.alias]
    resolve_model(args.alias)  # the transformers folder (the tokenizer=, and the native scorer)
    work = Path(tempfile.mkdtemp(prefix="icm-served-"))
    gguf = alias.locate_gguf(work)
    report: dict = {"alias": args.alias, "gguf": gguf.name, "threads_per_server": args.threads, "uptime_before": uptime()}
    print(f"{args.alias} ({gguf.name}); {report['uptime_before']}", flush=True)
    servers = [start_llamacpp_server(gguf, threads=args.threads, n_ctx=args.n_ctx, log=work / f"server{k}.log")
               for k in range(2)]
    urls = [url for _, url in servers]
    try:
        if args.evaluate:
            report.update(evaluations(task, args, urls))
        if args.batch:
            pool = load_examples(None, task, 2 * args.batch)
            one = served_scorer(model_args(urls[:1], args.alias, 1), task.label_words, args.alias)
            both = served_scorer(model_args(urls, args.alias, 1), task.label_words, args.alias)
            s1, labels1 = two_batches(one, task, pool, args.batch, args.iterations, work / "one")
            s2, labels2 = two_batches(both, task, pool, args.batch, args.iterations, work / "two")
            report["two_batches"] = {"pool": len(pool), "batches": len(split_by_group(pool, args.batch)),
                                     "one_server_s": s1, "two_servers_s": s2, "ratio": s2 / s1,
                                     "same_labels": labels1 == labels2}
            print(f"two batches of <= {args.batch} ({len(pool)} claims, {args.iterations} steps each): one server "
                  f"{s1:.1f} s, two servers {s2:.1f} s, ratio {s2 / s1:.2f}; same labels: {labels1 == labels2}",
                  flush=True)
    finally:
        for proc, _ in servers:
            stop_server(proc, timeout=30)
    report["uptime_after"] = uptime()
    print(report["uptime_after"])
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
