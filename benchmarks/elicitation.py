"""Does ICM elicit? ICM beside zero-shot, zero-shot + rule, bootstrap and the golden in-context ceiling, per seed.

    python benchmarks/elicitation.py [--task facts|FILE.yaml] [--data FILE] [--seeds 0,1,2] [--pairs 32]
        [--model gemma-3-270m] [--icm default paper] [--icm "T1:initial_temperature=1" ...] [--json out.json]
    python benchmarks/elicitation.py --task examples/topics/topics.yaml --pairs 0 --icm default   # 4 labels

Each seed draws its own pool of ``--pairs`` consistency groups (every member of each; ``--pairs 0``: the whole
pool, the seed then moves only ICM's start and layout) from the task's data (``--data``, else the task's own:
the packaged facts by default). Any task file works, with any number of labels. On the pool:

- zero-shot: each example's most likely label with no demonstrations (two labels: True when the model prefers
  " True");
- zero-shot + rule: the same scores decoded under the task's rule (per question, the more likely candidate);
- bootstrap: ``icm_plugin.method.bootstrap.Bootstrap`` (3 rounds, own group left out, rule-decoded);
- golden, own group hidden: every example scored with the GOLD labels of all other groups as demonstrations
  (the default layout of that seed), rule-decoded: what in-context learning reaches with perfect labels;
- each ICM setting (``default`` = ``ICMConfig()``, ``paper`` = ``ICMConfig.paper()``, or ``name:key=value,...``
  overrides of ``ICMConfig``): accuracy, balanced accuracy, and U of its result, of gold and of gold with every
  group flipped, all under that run's own objective and layout; seconds and token-forwards of the search.
  A setting's ``seed=N`` offsets its search seed from the pool's (``other-seed:seed=100``: the same pool,
  searched with seed + 100: another start and layout).

Gold labels are used for scoring only, never by a method (the golden row is the ceiling, not a method).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from icm_plugin.core.examples import Example, Groups, canonical_order
from icm_plugin.core.loaders import load_examples
from icm_plugin.core.metrics import accuracy, balanced_accuracy
from icm_plugin.core.tasks import get_task
from icm_plugin.method.baselines import zero_shot_scores
from icm_plugin.method.bootstrap import Bootstrap, rule_decode
from icm_plugin.method.objective import group_requests
from icm_plugin.method.reliability import THRESHOLDS, assess, judge, rotated_within
from icm_plugin.method.search import ICM, ICMConfig


def draw_pool(examples: list[Example], pairs: int, seed: int) -> list[Example]:
    """``pairs`` groups drawn at random by ``seed``, every member of each, in file order (0: all)."""
    if pairs <= 0:
        return list(examples)
    members = Groups(examples).members
    groups = sorted(members)
    chosen = set(np.random.default_rng(seed).choice(len(groups), size=pairs, replace=False).tolist())
    keep = sorted(i for k in chosen for i in members[groups[k]])
    return [examples[i] for i in keep]


def flipped(labels: list[int], pool: list[Example]) -> list[int]:
    """Gold with every group's labels rotated by one member (for pairs: swapped): just as consistent."""
    return rotated_within(labels, Groups(pool))


def zero_shot_overturns(zs: np.ndarray, pred: list[int], gold: list[int]) -> dict:
    """Where ICM's labels overturn what the model answers zero-shot, and how sure the model was there: a candidate
    gold-free signal (a drifting search overturns confident answers, an eliciting one unsure answers), measured
    here beside the gold it is to be judged by. Confidence: the zero-shot answer's probability, renormalised over
    the label words."""
    p = np.exp(zs - zs.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top, conf = p.argmax(axis=1), p.max(axis=1)
    over = np.asarray(pred) != top
    right = top == np.asarray(gold)
    mean = lambda a: None if not len(a) else float(np.mean(a))  # noqa: E731
    return {"share": float(over.mean()), "confident_share": float(np.mean(over & (conf >= 0.9))),
            "confidence_overturned": mean(conf[over]), "confidence_kept": mean(conf[~over]),
            "zero_shot_right_where_overturned": mean(right[over])}


def parse_setting(spec: str) -> tuple[str, ICMConfig]:
    """``default``, ``paper``, or ``name:key=value,...`` (base: default; ``paper=1`` starts from the paper's)."""
    if spec in ("default", "paper"):
        return spec, ICMConfig() if spec == "default" else ICMConfig.paper()
    name, _, rest = spec.partition(":")
    kinds = {f.name: f.type for f in fields(ICMConfig)}
    over: dict = {}
    base = ICMConfig()
    for part in filter(None, rest.split(",")):
        key, _, value = part.partition("=")
        if key == "paper":
            base = ICMConfig.paper()
            continue
        if key not in kinds:
            raise SystemExit(f"unknown ICMConfig field {key!r} in {spec!r}")
        kind = str(kinds[key])
        over[key] = (value.lower() in ("1", "true") if "bool" in kind else
                     int(value) if kind.startswith("int") else
                     float(value) if "float" in kind else value)
    return name, replace(base, **over)


def scores_row(pred, gold) -> dict:
    return {"accuracy": accuracy(pred, gold), "balanced_accuracy": balanced_accuracy(pred, gold)}


def run_seed(seed: int, args, scorer, task, facts: list[Example], settings) -> dict:
    pool = draw_pool(facts, args.pairs, seed)
    gold = [int(e.label) for e in pool]
    rule = task.rule_for(pool)
    true = task.true_index if task.true_index is not None else 1
    row: dict = {"seed": seed, "n": len(pool)}
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if not args.quiet else (lambda *a: None)

    t, f0 = time.perf_counter(), scorer.token_forwards
    zs = zero_shot_scores(scorer, task, pool)
    row["zero_shot"] = scores_row([int(np.argmax(s)) for s in zs], gold)
    zs_rule = rule_decode(zs, pool, rule, true)
    row["zero_shot_rule"] = scores_row(zs_rule, gold) | {"seconds": time.perf_counter() - t,
                                                         "token_forwards": scorer.token_forwards - f0}
    say(f"seed {seed}: zero-shot {row['zero_shot']['accuracy']:.3f}, + rule {row['zero_shot_rule']['accuracy']:.3f}")

    t = time.perf_counter()
    boot = Bootstrap(scorer, task, rounds=3, seed=seed).fit(pool, initial_scores=zs)
    row["bootstrap"] = scores_row(boot.labels_, gold) | {"seconds": time.perf_counter() - t,
                                                         "token_forwards": boot.token_forwards_}
    say(f"seed {seed}: bootstrap {row['bootstrap']['accuracy']:.3f}")

    # the golden ceiling: gold demonstrations of the other groups, in the default layout of this seed
    t, f0 = time.perf_counter(), scorer.token_forwards
    layout = ICM(scorer, task, replace(ICMConfig(), seed=seed))
    order = canonical_order(pool, seed)  # the search's order of the pool: members inside a block as ICM lays them
    layout._prepare([pool[p].without_gold() for p in order], None)
    index, reqs = group_requests(task, [pool[p] for p in order], [gold[p] for p in order], layout._group_orders[0])
    golden = np.zeros((len(pool), task.k))
    golden[[order[k] for k in index]] = scorer.label_logprobs(reqs)
    row["golden_hidden"] = scores_row(rule_decode(golden, pool, rule, true), gold) | {
        "seconds": time.perf_counter() - t, "token_forwards": scorer.token_forwards - f0}
    say(f"seed {seed}: golden, own group hidden {row['golden_hidden']['accuracy']:.3f}")

    for name, cfg in settings:
        icm = ICM(scorer, task, replace(cfg, seed=seed + cfg.seed)).fit(pool, progress=not args.quiet)
        pred = icm.labels_
        u_gold, u_flip = icm.evaluate(gold).U, icm.evaluate(flipped(gold, pool)).U
        row[f"icm:{name}"] = scores_row(pred, gold) | {
            "U": icm.U_, "U_gold": u_gold, "U_gold_flipped": u_flip, "seconds": icm.seconds_,
            "token_forwards": icm.token_forwards_, "evaluations": icm.evaluations_, "steps": icm.n_iter_,
            "accepted": icm.accepted_, "converged": icm.converged_,
            "label_shares": [float(np.mean(np.asarray(pred) == j)) for j in range(task.k)],
            "agreement_zero_shot_rule": accuracy(pred, zs_rule), "inconsistencies": icm.inconsistencies_,
            "labels": [int(x) for x in pred],  # in the seed's pool order: two settings of one seed compare
            "steps_detail": [{k: h.get(k) for k in ("iteration", "T", "dU", "accepted", "judged", "labelled", "U")}
                             for h in icm.history_[1:]]}
        rel = assess(icm, pool, pred, zs_rule)  # the verdict `icm label` reports, with no gold
        row[f"icm:{name}"] |= {"reliability": {k: v for k, v in rel.items() if k != "records"}
                               | {"records_marked": len(rel["records"])},
                               "agreement_bootstrap": accuracy(pred, boot.labels_),
                               "zero_shot_overturns": zero_shot_overturns(np.asarray(zs), pred, gold)}
        r = row[f"icm:{name}"]
        say(f"seed {seed}: ICM {name}: acc {r['accuracy']:.3f} U {r['U']:.2f} U(gold) {u_gold:.2f} "
            f"U(flipped) {u_flip:.2f} {r['seconds']:.0f}s {r['token_forwards']} tok, {r['evaluations']} evals, "
            f"{r['steps']} steps, converged {r['converged']}")
    return row


METHODS = [("zero_shot", "zero-shot"), ("zero_shot_rule", "zero-shot + rule"), ("bootstrap", "bootstrap (3 rounds)"),
           ("golden_hidden", "golden demonstrations, own group hidden (ceiling)")]


def markdown(rows: list[dict], settings) -> str:
    out = ["| seed | method | accuracy | balanced acc. | U(result) | U(gold) | U(gold flipped) | seconds | token-forwards |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    keys = METHODS + [(f"icm:{n}", f"ICM {n}") for n, _ in settings]
    for row in rows:
        for key, label in keys:
            r = row[key]
            u = [f"{r[k]:.2f}" if k in r else "–" for k in ("U", "U_gold", "U_gold_flipped")]
            sec = f"{r['seconds']:.0f}" if "seconds" in r else "–"
            tok = f"{r['token_forwards']:,}" if "token_forwards" in r else "–"
            out.append(f"| {row['seed']} | {label} | {r['accuracy']:.3f} | {r['balanced_accuracy']:.3f} | "
                       + " | ".join(u) + f" | {sec} | {tok} |")
    out.append("")
    out.append("| method | mean accuracy | mean balanced acc. | min balanced acc. | mean seconds | mean token-forwards |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for key, label in keys:
        rs = [row[key] for row in rows]
        sec = f"{np.mean([r['seconds'] for r in rs]):.0f}" if all("seconds" in r for r in rs) else "–"
        tok = f"{np.mean([r['token_forwards'] for r in rs]):,.0f}" if all("token_forwards" in r for r in rs) else "–"
        out.append(f"| {label} | {np.mean([r['accuracy'] for r in rs]):.3f} | "
                   f"{np.mean([r['balanced_accuracy'] for r in rs]):.3f} | "
                   f"{min(r['balanced_accuracy'] for r in rs):.3f} | {sec} | {tok} |")
    out.append("")
    out.append("Reliability (no gold; `icm_plugin.method.reliability`): ICM against the baselines, and whether it was flagged")
    out.append("")
    out.append("| seed | ICM | ICM bal. acc. | vs zero-shot + rule | vs bootstrap | agreement z-s + rule | margin "
               "(nats/ex.) | against model | flag | should flag | should not flag |")
    out.append("|---|---|---:|---|---|---:|---:|---:|---|---|---|")
    for row in rows:
        for name, _ in settings:
            r = row[f"icm:{name}"]
            rel = r.get("reliability")
            if rel is None:
                continue
            b, zr, bs = r["balanced_accuracy"], row["zero_shot_rule"]["balanced_accuracy"], row["bootstrap"]["balanced_accuracy"]
            sig = rel["signals"]
            out.append(f"| {row['seed']} | {name} | {b:.3f} | {b - zr:+.3f} | {b - bs:+.3f} | "
                       f"{sig['agreement_zero_shot_rule']:.3f} | {sig['margin']:.3f} | {sig['against_model']:.3f} | "
                       f"{'yes' if rel['flag'] else 'no'} | {'yes' if b < zr else 'no'} | {'yes' if b >= bs else 'no'} |")
    return "\n".join(out)


def merge_tables(blobs: list[dict]) -> tuple[list[dict], list[tuple[str, None]]]:
    """Rows of several ``--json`` files, seed by seed: the baselines from the first file that has the seed and
    the ICM settings of every file that has it (so one job per seed, or one per setting, can be printed as one
    table). Only seeds that have every setting are printed, so the means are over one set of seeds."""
    by_seed: dict[int, dict] = {}
    for b in blobs:
        for r in b["rows"]:
            row = by_seed.setdefault(r["seed"], dict(r))
            row |= {k: v for k, v in r.items() if k.startswith("icm:")}
    names = list(dict.fromkeys(s["name"] for b in blobs for s in b["settings"]))
    complete = [row for _, row in sorted(by_seed.items()) if all(f"icm:{n}" in row for n in names)]
    return complete, [(n, None) for n in names]


def _signals(r: dict) -> dict:
    """A run's reliability signals, with ``majority_share`` for runs measured before it was a signal."""
    sig = dict(r["reliability"]["signals"])
    sig.setdefault("majority_share", max(r["label_shares"]))
    return sig


def _icm_runs(files: list[str]):
    """Every ICM run of earlier ``--json`` files: (file stem, file, seed row, setting name, the run's figures)."""
    for f in files:
        blob = json.loads(Path(f).read_text())
        for row in blob["rows"]:
            for st in blob["settings"]:
                yield Path(f).stem, blob, row, st["name"], row[f"icm:{st['name']}"]


def reliability_table(files: list[str]) -> str:
    """One row per pool, seed and ICM setting of earlier ``--json`` files: ICM against zero-shot + rule and
    bootstrap (balanced accuracy, gold), the gold-free signals, and the flag they give under today's
    ``THRESHOLDS`` (so a change of thresholds is judged on the same runs). The target: flagged wherever ICM is
    below zero-shot + rule, not flagged wherever ICM is at or above bootstrap."""
    out = [f"thresholds: {THRESHOLDS}", "",
           "| pool | model | seed | ICM | ICM bal. acc. | zero-shot + rule | bootstrap | agreement z-s + rule | "
           "margin | against model | majority share | flag | should flag | should not flag |",
           "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    missed, conflicting, runs = [], 0, 0
    rules = {"today's thresholds": THRESHOLDS,
             "margin and majority_share only": {k: THRESHOLDS[k] for k in ("margin", "majority_share")}}
    counts = {name: [0, 0, 0, 0] for name in rules}  # flagged/should flag, flagged/should not flag
    icm_runs = list(_icm_runs(files))  # the files are read once for all three tables
    for stem, blob, row, name, r in icm_runs:
        if "reliability" not in r:
            continue
        runs += 1
        b, zr, bs = (r["balanced_accuracy"], row["zero_shot_rule"]["balanced_accuracy"],
                     row["bootstrap"]["balanced_accuracy"])
        sig = _signals(r)
        should, should_not = b < zr, b >= bs
        conflicting += should and should_not
        fired = {rule: bool(judge(sig, limits)) for rule, limits in rules.items()}
        for rule, c in counts.items():
            if should:
                c[0], c[1] = c[0] + fired[rule], c[1] + 1
            elif should_not:
                c[2], c[3] = c[2] + fired[rule], c[3] + 1
        flag = fired["today's thresholds"]
        if (should and not flag) or (should_not and not should and flag):
            missed.append(f"{stem} seed {row['seed']} {name}")
        agree = "–" if sig["agreement_zero_shot_rule"] is None else f"{sig['agreement_zero_shot_rule']:.3f}"
        out.append(f"| {stem} | {blob.get('model')} | {row['seed']} | {name} | {b:.3f} | "
                   f"{zr:.3f} | {bs:.3f} | {agree} | {sig['margin']:.3f} | {sig['against_model']:.3f} | "
                   f"{sig['majority_share']:.3f} | "
                   f"{'yes' if flag else 'no'} | {'yes' if should else 'no'} | {'yes' if should_not else 'no'} |")
    out += ["", f"{runs} runs; {conflicting} both below zero-shot + rule and at or above bootstrap (the two targets "
            "conflict there: counted as should flag); target missed on "
            f"{len(missed)}: {', '.join(missed) or 'none'}", ""]
    out += [f"- {name}: flagged on {c[0]} of the {c[1]} runs below zero-shot + rule, and on {c[2]} of the {c[3]} "
            "at or above bootstrap (and not below zero-shot + rule)" for name, c in counts.items()]
    return "\n".join(out + overturns_table(icm_runs) + starts_table(icm_runs))


def overturns_table(icm_runs: list[tuple]) -> list[str]:
    """The runs that recorded ``zero_shot_overturns`` (a candidate signal, not in the verdict): where ICM
    overturned the model's zero-shot answer, how sure the model had been, and (gold) whether it had been right.
    ``icm_runs``: ``_icm_runs`` of the files."""
    out = []
    for stem, _, row, name, r in icm_runs:
        z = r.get("zero_shot_overturns")
        if z is None:
            continue
        fig = [("–" if z[k] is None else f"{z[k]:.3f}") for k in (
            "share", "confident_share", "confidence_overturned", "confidence_kept", "zero_shot_right_where_overturned")]
        out.append(f"| {stem} | {row['seed']} | {name} | {r['balanced_accuracy']:.3f} | "
                   f"{row['zero_shot']['balanced_accuracy']:.3f} | {' | '.join(fig)} |")
    if not out:
        return []
    return ["", "Where ICM overturned the model's zero-shot answer (a candidate signal, not in the verdict; the last "
            "column needs gold):", "",
            "| pool | seed | ICM | ICM bal. acc. | zero-shot | overturned | overturned with zero-shot p >= 0.9 | "
            "zero-shot p where overturned | where kept | zero-shot right where overturned |",
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"] + out


def starts_table(icm_runs: list[tuple]) -> list[str]:
    """Seeds where more than one ICM setting recorded its labels (a candidate signal, not in the verdict): the
    share of examples where each setting's labels equal the first setting's (searches of one pool from
    different starts: where they end apart, the objective's maximum was not found or is not one labelling).
    ``icm_runs``: ``_icm_runs`` of the files."""
    by_seed: dict[tuple[str, int], list[tuple[str, dict]]] = {}
    for stem, _, row, name, r in icm_runs:
        if "labels" in r:
            by_seed.setdefault((stem, row["seed"]), []).append((name, r))
    out = []
    for (stem, seed), ((first, r0), *others) in by_seed.items():
        for name, r in others:
            out.append(f"| {stem} | {seed} | {first} | {r0['balanced_accuracy']:.3f} | {r0['U']:.2f} | {name} | "
                       f"{r['balanced_accuracy']:.3f} | {r['U']:.2f} | {accuracy(r['labels'], r0['labels']):.3f} | "
                       f"{'yes' if judge(_signals(r0)) else 'no'} |")
    if not out:
        return []
    return ["", "Searches of one pool from different starts or seeds (a candidate signal, not in the verdict):", "",
            "| pool | seed | ICM | bal. acc. | U | other search | bal. acc. | U | agreement | first flagged today |",
            "|---|---:|---|---:|---:|---|---:|---:|---:|---|"] + out


def summary_table(files: list[str]) -> str:
    """One row per pool and model of earlier ``--json`` files (files whose names differ only in a trailing
    ``-sN`` are one pool, their seeds pooled): every method's mean balanced accuracy over the seeds (per seed in
    brackets), whether ICM's U reached U(gold), how often ICM collapsed to one label, and how often the verdict
    flags it under today's ``THRESHOLDS``."""
    pools: dict[str, dict] = {}
    for f in files:
        blob = json.loads(Path(f).read_text())
        entry = pools.setdefault(re.sub(r"-s\d+$", "", Path(f).stem), {"blob": blob, "rows": [], "settings": {}})
        entry["rows"] += blob["rows"]
        entry["settings"] |= {st["name"]: None for st in blob["settings"]}
    names = list(dict.fromkeys(n for e in pools.values() for n in e["settings"]))
    cols = METHODS + [(f"icm:{n}", f"ICM {n}") for n in names]
    out = ["| pool | model | n (first seed) | seeds | " + " | ".join(label.split(",")[0] for _, label in cols)
           + " | U(ICM) ≥ U(gold) | ICM one label | flagged |", "|---|---|---:|---|" + "---:|" * len(cols) + "---|---|---|"]
    for stem, e in pools.items():
        rows = sorted(e["rows"], key=lambda r: r["seed"])
        cells = []
        for key, _ in cols:
            vals = [r[key]["balanced_accuracy"] for r in rows if key in r]
            cells.append("–" if not vals else f"{np.mean(vals):.3f}" + (
                f" ({' / '.join(f'{v:.3f}' for v in vals)})" if len(vals) > 1 else ""))
        icm = [r[f"icm:{n}"] for r in rows for n in names if f"icm:{n}" in r]
        reached = sum(r["U"] >= r["U_gold"] - 1e-9 for r in icm)
        one = sum(max(r["label_shares"]) == 1.0 for r in icm)
        judged = [bool(judge(_signals(r))) for r in icm if "reliability" in r]  # runs from before it: none
        flagged = f"{sum(judged)}/{len(judged)}" if judged else "–"
        out.append(f"| {stem} | {e['blob'].get('model')} | {rows[0]['n']} | {','.join(str(r['seed']) for r in rows)} | "
                   + " | ".join(cells) + f" | {reached}/{len(icm)} | {one}/{len(icm)} | {flagged} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="facts", help="a built-in task or a task file (any number of labels)")
    ap.add_argument("--data", default=None, help="the task's records (default: the task's own data)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--pairs", type=int, default=32, help="consistency groups per seed (0: the whole pool)")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--icm", nargs="+", default=["default", "paper"], help="ICM settings to run")
    ap.add_argument("--json", default=None, help="also write every figure to this file")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--tables", nargs="+", metavar="JSON", help="print the tables of earlier --json files (their "
                    "ICM settings side by side, seed by seed; the baselines from the first) and exit")
    ap.add_argument("--reliability", nargs="+", metavar="JSON", help="print the reliability table of earlier --json "
                    "files (any pools, models, settings) under today's thresholds and exit")
    ap.add_argument("--summary", nargs="+", metavar="JSON", help="print one row per pool and model of earlier --json "
                    "files (FILE-sN.json of one pool pooled over their seeds) and exit")
    args = ap.parse_args()
    if args.summary:
        print(summary_table(args.summary))
        return
    if args.reliability:
        print(reliability_table(args.reliability))
        return
    if args.tables:
        blobs = [json.loads(Path(f).read_text()) for f in args.tables]
        rows, settings = merge_tables(blobs)
        print(", ".join(f"{f}: {b.get('model')} ({b.get('dtype', 'dtype not recorded')}, {b.get('machine', '?')})"
                        for f, b in zip(args.tables, blobs, strict=True)))
        print(markdown(rows, settings))
        return
    import torch

    from icm_plugin.scoring.hardware import dtype_name
    from icm_plugin.scoring.models import load_model
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    settings = [parse_setting(s) for s in args.icm]
    task = get_task(args.task)
    facts = load_examples(args.data, task, None)
    model, tok = load_model(args.model, dtype=args.dtype)
    scorer = PrefixSharingScorer(model, tok, task.label_words, task.fewshot_delimiter)
    dtype = dtype_name(model.dtype)  # --dtype auto: bfloat16 only with hardware bfloat16
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    print(f"elicitation: {args.model} in {dtype} on {machine}", file=sys.stderr, flush=True)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows.append(run_seed(seed, args, scorer, task, facts, settings))
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "settings": [
                {"name": n, "config": c.__dict__} for n, c in settings], "model": args.model, "dtype": dtype,
                "machine": machine, "task": task.name, "labels": list(task.choices)}, indent=2))
    size = f"{args.pairs} groups per seed" if args.pairs > 0 else "the whole pool every seed"
    print(f"{args.model} ({dtype}, {machine}), task {task.name} ({task.k} labels), {size} "
          f"(n = {rows[0]['n']}), rule {task.rule_for(facts)}")
    print(markdown(rows, settings))


if __name__ == "__main__":
    main()
