"""`icm label`: load a pool, run the search, write the run folder. The glue between CLI and package."""

from __future__ import annotations

import argparse
import platform
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from icm_plugin.baselines import reference_labellings
from icm_plugin.examples import Example
from icm_plugin.loaders import load_examples, read_label_file
from icm_plugin.metrics import reference_report
from icm_plugin.preflight import (
    check_checkpoint,
    check_clamp,
    check_compare_to,
    check_pool_memory,
    rule_coverage,
    run_info,
)
from icm_plugin.rundir import RunDir
from icm_plugin.search import ICM, ICMConfig
from icm_plugin.tasks import DEMO_SEPARATOR, Task, get_task
from icm_plugin.writers import (
    build_report,
    plot_progress,
    read_jsonl,
    write_examples,
    write_json,
    write_jsonl,
    write_labels,
)

# the embedded default job: 32 of the 520 packaged claims, so it finishes in minutes on 2 CPU cores
EMBEDDED_FACTS_LIMIT = 32


def read_clamp_file(path: str | Path) -> dict[str, int]:
    """Labels a search must keep: jsonl lines {"id": ..., "label": 0/1/true/false}."""
    return read_label_file(path)


def default_out(task: str, model: str, seed: int) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).name or model)
    return Path("runs") / f"{task}-{slug}-seed{seed}"


def clamp_effect(previous: Path | None, clamped: dict[str, int], examples: list[Example], labels: list[int]) -> dict[str, Any]:
    """How the clamped labels changed the result, against an earlier run with the same seed (if given)."""
    effect: dict[str, Any] = {"clamped": len(clamped), "clamped_differs_from_previous": None,
                              "changed_by_clamp": None}
    if previous is None:
        return effect
    prev_path = previous / "labels.jsonl"
    prev = {r["id"]: int(r["label"]) for r in read_jsonl(prev_path)}
    effect["clamped_differs_from_previous"] = sum(1 for i, y in clamped.items() if i in prev and prev[i] != y)
    effect["changed_by_clamp"] = sum(1 for e, y in zip(examples, labels, strict=True)
                                     if e.id not in clamped and e.id in prev and prev[e.id] != y)
    return effect


def build_config(args: argparse.Namespace) -> ICMConfig:
    cfg = ICMConfig(seed=args.seed)
    if args.iterations is not None:
        cfg = replace(cfg, iterations=args.iterations)
    if args.alpha is not None:
        cfg = replace(cfg, alpha=args.alpha)
    if getattr(args, "force_repair", None) is not None:
        cfg = replace(cfg, force_repair=args.force_repair)
    return cfg


def load_pool(args: argparse.Namespace, task: Task, plugins: list) -> list[Example]:
    for plugin in plugins:
        pool = plugin.load_pool(args, task)
        if pool is not None:
            return pool
    limit = args.limit
    if limit is None and args.data is None and task.name == "facts":
        limit = EMBEDDED_FACTS_LIMIT
    return load_examples(args.data, task, limit or None)


def label_command(args: argparse.Namespace, plugins: list | None = None) -> int:
    """Run `icm label` end to end; returns the exit code.

    Everything a user can get wrong (pool, clamps, --compare-to, --out, the checkpoint a --resume continues)
    is checked before the model loads and before anything is written; a refused run leaves the folder as it
    was. Raises ICMError.
    """
    from icm_plugin.scoring.registry import model_name_for_args, scorer_for_args

    plugins = plugins or []
    if getattr(args, "batch_size", None):
        from icm_plugin.batches import label_in_batches

        return label_in_batches(args, plugins)
    task = get_task(args.task)
    examples = load_pool(args, task, plugins)
    clamped = read_clamp_file(args.clamp) if args.clamp else {}
    check_clamp(clamped, examples, args.clamp)
    check_compare_to(getattr(args, "compare_to", None))
    rule = args.rule or task.rule_for(examples)
    model_name = model_name_for_args(args)
    out = Path(args.out) if args.out else default_out(task.name, model_name, args.seed)
    cfg = build_config(args)
    info = run_info(args, task, rule)
    with RunDir.open(out, args.resume) as run_dir, run_dir.guard():
        if args.resume:
            check_checkpoint(run_dir.checkpoint, examples, cfg, clamped, info)
        coverage = rule_coverage(examples, rule, args.data or task.name)
        scorer = scorer_for_args(args, task.label_words, DEMO_SEPARATOR)
        if getattr(args, "memory_limit", None) is not None and hasattr(scorer, "memory_budget"):
            scorer.memory_budget = args.memory_limit
        check_pool_memory(scorer, task, examples, args.data or f"the {task.name} pool")
        config_blob = {"task": task.name, "model": args.model, "data": args.data, "limit": args.limit,
                       "rule": rule, "scorer": getattr(args, "scorer", "prefix"),
                       "model_type": getattr(args, "model_type", None),
                       "model_args": getattr(args, "model_args", None),
                       "clamp": args.clamp, "hyperparameters": asdict(cfg)}
        write_examples(out, examples)
        write_json(out / "config.json", config_blob)

        icm = ICM(scorer, task, cfg, rule=args.rule)
        print(f"icm: labelling {len(examples)} examples of task {task.name!r} with {model_name} -> {out}")
        icm.fit(examples, clamped=clamped, checkpoint=run_dir.checkpoint, resume=args.resume, run_info=info)

        write_labels(out, examples, icm.labels_, icm.confidence_)
        write_jsonl(out / "conflicts.jsonl", icm.conflicts_)
        forwards = scorer.token_forwards
        references = reference_labellings(scorer, task, examples, icm.rule_name_)  # asking the model once
        base = {
            "task": task.name, "model": model_name, "n": len(examples), "iterations": icm.n_iter_,
            "converged": icm.converged_, "evaluations": icm.evaluations_, "accepted": icm.accepted_, "U": icm.U_, "mutual_predictability": icm.mutual_predictability_,
            "inconsistencies": icm.inconsistencies_, "rule": icm.rule_name_, **coverage,
            "seconds": round(icm.seconds_, 2), "token_forwards": icm.token_forwards_, "seed": args.seed,
            "alpha": cfg.alpha, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
        compare = Path(args.compare_to) if getattr(args, "compare_to", None) else None
        base["clamp"] = clamp_effect(compare, clamped, examples, icm.labels_)
        base["reference"] = reference_report(examples, icm.labels_, references)
        base["reference_token_forwards"] = scorer.token_forwards - forwards
        report = build_report(out, examples, base)
        write_json(out / "report.json", report)
        plot_progress(out, examples, icm.history_, references={
            REFERENCE_NAMES[k]: v["accuracy"] for k, v in report["reference"].items() if v["accuracy"] is not None})
        write_jsonl(out / "history.jsonl", icm.history_)
    for plugin in plugins:
        plugin.after_label(args, out)
    _print_summary(out, report)
    return 0


REFERENCE_NAMES = {"zero_shot": "zero-shot", "zero_shot_rule": "zero-shot + rule"}


def _print_summary(out: Path, report: dict[str, Any]) -> None:
    acc, bacc = report.get("accuracy"), report.get("balanced_accuracy")
    line = (f"icm: done: n={report['n']} U={report['U']:.3f} inconsistencies={report['inconsistencies']} "
            f"{report['seconds']:.0f}s {report['token_forwards']} token-forwards")
    if acc is not None:
        line += f"; vs gold: accuracy={acc:.3f} balanced_accuracy={bacc:.3f}"
        if report.get("gold_n", report["n"]) < report["n"]:
            line += f" (on the {report['gold_n']} of {report['n']} examples that have gold)"
    print(line)
    refs = report.get("reference") or {}
    if refs:
        agree = ", ".join(f"{REFERENCE_NAMES[k]} {v['agreement']:.3f}" for k, v in refs.items())
        print(f"icm: agreement with asking the model once (no gold needed): {agree}")
        if acc is not None:
            print(f"icm: accuracy: ICM {acc:.3f}; "
                  + ", ".join(f"{REFERENCE_NAMES[k]} {v['accuracy']:.3f}" for k, v in refs.items()))
    if report.get("rule_note"):
        print(f"icm: note: {report['rule_note']}")
    if report.get("collapsed_to_one_class"):
        print("icm: WARNING: the labelling collapsed to (almost) one class; see report.json")
    print(f"icm: labels:  {out / 'labels.jsonl'}")
    print(f"icm: report:  {out / 'report.json'}  (plot: {out / 'progress.png'})")
