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

3. ``--paths N ...``: per evaluation of P at each n, the three scoring paths side by side: the native prefix
   scorer (token-forwards, seconds), the next-token path (``scoring=next-token``, the default for servers: one
   ``max_tokens=1, logprobs=20`` request per prompt) on one server and on both, and today's echo path
   (``scoring=echo``: lm-eval's ``loglikelihood``, one ``echo=True`` request per prompt per label word) on one
   server for its first ``--echo-prompts`` prompts only (llama-cpp-python sorts the 262k vocabulary in Python at
   every echoed token, minutes per prompt here). "Server tokens" are the prompt tokens the servers actually
   evaluated, summed from their logs' ``prompt eval time = ... / N tokens`` lines (what is left after
   llama-cpp-python reuses the prefix its one slot shares with the previous prompt); each measurement starts
   after a one-token prompt that empties that cache. Labels: the argmax over the label words against the
   native scorer's (float32 transformers folder), and the max |diff| of the normalised log-probabilities.

``uptime`` is recorded before and after: the servers share the machine's cores with whatever else runs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from gpu_scaling import group_requests  # benchmarks/gpu_scaling.py (this script's folder is on sys.path)

from icm_plugin.apps.batches import BatchRunner, split_by_group
from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.method.search import ICMConfig
from icm_plugin.scoring.llamacpp_server import start_llamacpp_server, stop_server
from icm_plugin.scoring.lmeval_backend import LMEvalScorer
from icm_plugin.scoring.models import ALIASES, load_model, resolve_model
from icm_plugin.scoring.next_token import build_backend_scorer
from icm_plugin.scoring.prefix import PrefixSharingScorer


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


PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")


class ServerLogs:
    """The prompt tokens the servers evaluated since ``mark()``, from their logs."""

    def __init__(self, logs: list[Path]):
        self.logs = logs
        self.offsets = [0] * len(logs)

    def mark(self) -> None:
        self.offsets = [len(log.read_text(errors="replace")) for log in self.logs]

    def since(self) -> tuple[int, int]:
        """(prompt tokens evaluated, prompts evaluated) since the last ``mark()``, all servers together."""
        counts = [int(m) for log, at in zip(self.logs, self.offsets, strict=True)
                  for m in PROMPT_EVAL.findall(log.read_text(errors="replace")[at:])]
        return sum(counts), len(counts)


def empty_caches(urls: list[str]) -> None:
    """One one-token prompt per server: its slot then shares nothing but BOS with the next prompt."""
    import requests

    for url in urls:
        requests.post(url, json={"prompt": "Hi", "max_tokens": 1, "temperature": 0}, timeout=600).raise_for_status()


def path_row(name: str, scorer, reqs, urls: list[str], logs: ServerLogs, ref: np.ndarray) -> dict:
    empty_caches(urls)
    logs.mark()
    t = time.perf_counter()
    out = scorer.label_logprobs(reqs)
    seconds = time.perf_counter() - t
    tokens, prompts = logs.since()
    return {"path": name, "servers": len(urls), "prompts": len(reqs), "seconds": seconds, "server_tokens": tokens,
            "server_prompts": prompts, "requests": getattr(scorer, "requests_sent", None),
            "labels_below_top_k": getattr(scorer, "labels_below_top_k", None),
            "same_labels": int((out.argmax(1) == ref.argmax(1)).sum()), "max_diff": float(np.abs(out - ref).max())}


def paths(task, args, urls: list[str], logs: list[Path]) -> list[dict]:
    """Part 3: the native scorer, the next-token path (one and two servers) and the echo path, per n."""
    model, tok = load_model(args.alias, dtype="float32", device="cpu")
    server_logs = ServerLogs(logs)
    rows: list[dict] = []
    print("| n | path | servers | prompts | seconds | tokens computed | labels = native | max diff |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n in args.paths:
        examples, _, reqs = group_requests(task, n)
        reqs = sorted(reqs, key=lambda r: (r.demos, r.query))  # trie order (the served paths sort them too)
        native = PrefixSharingScorer(model, tok, task.label_words)
        t = time.perf_counter()
        ref = native.label_logprobs(reqs)
        found = [{"path": "native prefix", "servers": 0, "prompts": len(reqs), "seconds": time.perf_counter() - t,
                  "server_tokens": native.token_forwards, "same_labels": len(reqs), "max_diff": 0.0}]
        print(f"| {len(examples)} | native prefix | - | {len(reqs)} | {found[0]['seconds']:.1f} "
              f"| {native.token_forwards:,} | - | - |", flush=True)
        runs = [("next-token", urls[:k], reqs, "") for k in args.servers if not (k > 1 and n > args.two_servers_max_n)
                and args.next_token]
        if args.echo_prompts:
            runs.append(("echo", urls[:1], reqs[:args.echo_prompts], "scoring=echo"))
        for name, use, sub, extra in runs:
            scorer = build_backend_scorer("local-completions", ",".join(filter(None, [model_args(use, args.alias, 1),
                                                                                      extra])), task.label_words)
            if not ALIASES[args.alias].add_bos:
                scorer.bos_text = scorer.lm.tokenizer.bos_token
            row = path_row(name, scorer, sub, use, server_logs, ref[:len(sub)])
            row["n"] = len(examples)
            found.append(row)
            print(f"| {len(examples)} | {name} | {row['servers']} | {row['prompts']} | {row['seconds']:.1f} "
                  f"| {row['server_tokens']:,} | {row['same_labels']}/{row['prompts']} | {row['max_diff']:.3f} |",
                  flush=True)
        for row in found:
            row["n"] = len(examples)
        rows.extend(found)
    return rows


def counted(task, alias: str, sizes: list[int]) -> list[dict]:
    """Part 4 (no server): the prompt tokens llama-cpp-python's one-slot cache leaves to evaluate when the
    next-token path sends the trie-ordered prompts of one evaluation at n (each prompt after the previous one;
    the first after a one-token prompt), counted with the alias's tokenizer; the echo path adds about two per
    prompt (its second label word's request reuses the whole context). Whole prompts: what a server without a
    prefix cache (vLLM with prompt log-probabilities) computes per label word."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(alias))
    rows = []
    for n in sizes:
        _, _, reqs = group_requests(task, n)
        prev, computed, whole, longest = tok("Hi")["input_ids"], 0, 0, 0
        for r in sorted(reqs, key=lambda r: (r.demos, r.query)):
            ids = tok("".join(d + "\n\n" for d in r.demos) + r.query)["input_ids"]
            lcp = next((i for i, (a, b) in enumerate(zip(prev, ids, strict=False)) if a != b),
                       min(len(prev), len(ids)))
            computed += len(ids) - min(lcp, len(ids) - 1)
            whole, longest, prev = whole + len(ids), max(longest, len(ids)), ids
        rows.append({"n": n, "prompts": len(reqs), "next_token_tokens": computed,
                     "echo_tokens": computed + 2 * len(reqs), "whole_prompt_tokens": whole, "longest": longest})
        print(f"counted n={n}: {len(reqs)} prompts (longest {longest} tokens); next-token path {computed:,} tokens "
              f"computed, echo path ~{computed + 2 * len(reqs):,}; whole prompts {whole:,}", flush=True)
    return rows


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
    ap.add_argument("--paths", type=int, nargs="*", default=[],
                    help="part 3 at these n: native prefix, next-token (one and two servers) and echo paths")
    ap.add_argument("--servers", type=int, nargs="+", default=[1, 2], choices=[1, 2],
                    help="part 3: the next-token path on this many servers")
    ap.add_argument("--two-servers-max-n", type=int, default=10**9, help="part 3: two servers only up to this n")
    ap.add_argument("--next-token", action=argparse.BooleanOptionalAction, default=True,
                    help="part 3: measure the next-token path (--no-next-token: only native and echo)")
    ap.add_argument("--echo-prompts", type=int, default=1,
                    help="part 3: the echo path on this many prompts (in trie order) per n; 0: not measured")
    ap.add_argument("--count", type=int, nargs="*", default=[],
                    help="part 4 at these n, no server: the prompt tokens a one-slot prefix cache leaves to compute")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    task = get_task("facts")
    alias = ALIASES[args.alias]
    resolve_model(args.alias)  # the transformers folder (the tokenizer=, and the native scorer)
    work = Path(tempfile.mkdtemp(prefix="icm-served-"))
    gguf = alias.locate_gguf(work)
    report: dict = {"alias": args.alias, "gguf": gguf.name, "threads_per_server": args.threads, "uptime_before": uptime()}
    if args.count:
        report["counted"] = counted(task, args.alias, args.count)
        if not (args.paths or args.evaluate or args.batch):
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1))
            return
    print(f"{args.alias} ({gguf.name}); {report['uptime_before']}", flush=True)
    logs = [work / f"server{k}.log" for k in range(2)]
    servers = [start_llamacpp_server(gguf, threads=args.threads, n_ctx=args.n_ctx, log=logs[k]) for k in range(2)]
    urls = [url for _, url in servers]
    try:
        if args.paths:
            report["paths"] = paths(task, args, urls, logs)
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
