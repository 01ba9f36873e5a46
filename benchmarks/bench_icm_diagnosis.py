"""Does mutual predictability prefer the gold labelling? P(D) of a few labellings of one pool, with the leave-one-out
prompts as ICM builds them (every other labelled example, same-question candidates included) and with the
query's own consistency group hidden from its demonstrations.

    python benchmarks/bench_icm_diagnosis.py --task facts --limit 16 [--model gemma-3-270m] [--skip-table]
        [--search-steps 16 --temperatures 10,1 --hide-own-group]

With --search-steps, also runs the ICM search itself for each initial temperature T0 (and, with --hide-own-group,
with the query's group hidden from its demonstrations) and prints the accuracy of what it finds.

If P(gold) is not above P(gold with every group flipped), which is just as consistent, ICM's search cannot find the
gold labelling whatever its schedule: the objective itself points elsewhere. A small model copies the label of the
near-identical demonstration of the same question, which rewards giving both candidates one label, something the
rule forbids, so among consistent labellings the copy effect favours none and P measures little else.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np

from icm_plugin.core.loaders import limit_pool
from icm_plugin.core.metrics import accuracy
from icm_plugin.core.tasks import get_task
from icm_plugin.integrations.lmeval.cli import task_examples
from icm_plugin.integrations.lmeval.split import split_pool
from icm_plugin.method.baselines import zero_shot_scores
from icm_plugin.method.bootstrap import rule_decode
from icm_plugin.method.consistency import make_rule
from icm_plugin.method.objective import evaluate
from icm_plugin.scoring.base import Scorer, ScoreRequest
from icm_plugin.scoring.models import load_model
from icm_plugin.scoring.prefix import PrefixSharingScorer


class OwnGroupHidden(Scorer):
    """Wraps a scorer: drops each request's demonstrations that share the query's first line (its question)."""

    def __init__(self, inner: Scorer):
        self.inner = inner
        self.label_words = inner.label_words

    @property
    def token_forwards(self) -> int:  # type: ignore[override]
        return self.inner.token_forwards

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        def question(text: str) -> str:
            return text.split("\n", 1)[0]

        return self.inner.label_logprobs([
            ScoreRequest(tuple(d for d in r.demos if question(d) != question(r.query)), r.query) for r in requests])


def flip_groups(labels: Sequence[int], examples, seed: int | None = None) -> list[int]:
    """Gold with every pair flipped (seed None), or a random consistent labelling (one True per group)."""
    rng = np.random.default_rng(seed)
    out = list(labels)
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(e.consistency_id, []).append(i)
    for members in groups.values():
        if seed is None and len(members) == 2:
            a, b = members
            out[a], out[b] = out[b], out[a]
        elif seed is not None:
            t = int(rng.choice(members))
            for i in members:
                out[i] = int(i == t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="facts")
    ap.add_argument("--data", default=None)
    ap.add_argument("--limit", type=int, default=16)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--alpha", type=float, default=50.0)
    ap.add_argument("--skip-table", action="store_true", help="only the searches")
    ap.add_argument("--search-steps", type=int, default=0, help="also run ICM searches of this many steps")
    ap.add_argument("--temperatures", default="10,1", help="initial temperatures T0 of those searches")
    ap.add_argument("--hide-own-group", action="store_true", help="also search with the own group hidden")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    task = get_task(args.task)
    pool, _ = split_pool(task_examples(task, args.data))
    pool = limit_pool(pool, args.limit)
    gold = [int(e.label) for e in pool]
    model, tok = load_model(args.model)
    scorer = PrefixSharingScorer(model, tok, task.label_words)
    rule = make_rule(task.rule_for(pool), pool)
    zs = rule_decode(zero_shot_scores(scorer, task, pool), pool, rule.name)
    labellings = {"gold": gold, "gold, every group flipped": flip_groups(gold, pool),
                  "zero-shot + rule": zs, "random consistent": flip_groups(gold, pool, seed=0)}
    if not args.skip_table:
        table(args, task, pool, gold, scorer, rule, labellings)
    if args.search_steps:
        searches(args, task, pool, gold, scorer)


def table(args, task, pool, gold, scorer, rule, labellings) -> None:
    order = list(range(len(pool)))
    print(f"{args.model} on {task.name}: pool {len(pool)}; P = mean LOO log p(label) in nats; "
          "'LOO acc' = leave-one-out argmax vs gold")
    print("| labelling | accuracy vs gold | P, own group shown (ICM) | LOO acc | P, own group hidden | LOO acc |")
    print("|---|---|---|---|---|---|")
    for name, labels in labellings.items():
        cells = [name, f"{accuracy(labels, gold):.2f}"]
        for s in (scorer, OwnGroupHidden(scorer)):
            t = time.perf_counter()
            ev = evaluate(s, task, rule, pool, labels, order, args.alpha)
            pred = [int(np.argmax(ev.logprobs[i])) for i in range(len(pool))]
            cells += [f"{ev.mutual_predictability:.3f} ({time.perf_counter() - t:.0f}s)", f"{accuracy(pred, gold):.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def searches(args, task, pool, gold, scorer) -> None:
    from icm_plugin.method.search import ICM, ICMConfig

    print(f"\nICM searches, {args.search_steps} steps, seed {args.seed}, alpha {args.alpha}")
    print("| T0 | demonstrations | accuracy vs gold | P | accepted | seconds |")
    print("|---|---|---|---|---|---|")
    variants = [("all others (ICM)", scorer)]
    if args.hide_own_group:
        variants.append(("own group hidden", OwnGroupHidden(scorer)))
    for t0 in (float(t) for t in args.temperatures.split(",")):
        for name, s in variants:
            cfg = ICMConfig(alpha=args.alpha, initial_temperature=t0, iterations=args.search_steps, seed=args.seed)
            icm = ICM(s, task, cfg).fit(pool, progress=False)
            print(f"| {t0:g} | {name} | {accuracy(icm.labels_, gold):.2f} | {icm.mutual_predictability_:.3f} | "
                  f"{icm.accepted_} | {icm.seconds_:.0f} |", flush=True)


if __name__ == "__main__":
    main()
