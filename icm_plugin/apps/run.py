"""``label(job)``: load a pool, run the search, write the run folder (what `icm label` runs)."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from icm_plugin.apps.preflight import (
    check_checkpoint,
    check_clamp,
    check_compare_to,
    check_pool_memory,
    rule_coverage,
)
from icm_plugin.core.examples import Example
from icm_plugin.core.metrics import reference_report
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.core.rundir import RunDir
from icm_plugin.core.tasks import write_task_file
from icm_plugin.core.writers import (
    build_report,
    plot_progress,
    read_jsonl,
    write_examples,
    write_json,
    write_jsonl,
    write_labels,
)
from icm_plugin.method.baselines import reference_labellings
from icm_plugin.method.job import LabelJob, job_task, load_pool
from icm_plugin.method.reliability import assess, reliability_line, report_reliability
from icm_plugin.method.search import ICM


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


def label(job: LabelJob) -> RunFolder:
    """Run ``job`` end to end (`icm label`) and return its finished run folder.

    Everything a user can get wrong (pool, clamps, ``compare_to``, ``out``, the checkpoint a resume continues)
    is checked before the model loads and before anything is written; a refused run leaves the folder as it
    was. With ``job.batch_size`` the pool is labelled in batches (``icm_plugin.apps.batches``). Prints progress and
    a summary to stdout. Raises ICMError.
    """
    if job.batch_size:
        from icm_plugin.apps.batches import label_in_batches

        return label_in_batches(job)
    task = job_task(job)
    examples = load_pool(job, task)
    clamped = job.clamps()
    check_clamp(clamped, examples, job.clamp_source)
    check_compare_to(job.compare_to)
    rule = job.rule or task.rule_for(examples)
    model_name = job.model.display_name
    out = job.out_dir(task)
    cfg = job.config
    info = job.run_info(task, rule)
    with RunDir.open(out, job.resume) as run_dir, run_dir.guard():
        if job.resume:
            check_checkpoint(run_dir.checkpoint, examples, cfg, clamped, info)
        coverage = rule_coverage(examples, rule, job.data or task.name)
        scorer = job.model.build(task.label_words, task.fewshot_delimiter)
        check_pool_memory(scorer, task, examples, job.data or f"the {task.name} pool")
        write_examples(out, examples)
        write_task_file(task, out)
        write_json(out / "config.json", job.config_record(task, rule))

        icm = ICM(scorer, task, cfg, rule=job.rule)
        dtype = _model_dtype(scorer)
        print(f"icm: labelling {len(examples)} examples of task {task.name!r} with {model_name}"
              f"{f' ({dtype})' if dtype else ''} -> {out}")
        icm.fit(examples, clamped=clamped, checkpoint=run_dir.checkpoint, resume=job.resume, run_info=info)

        forwards = scorer.token_forwards
        references = reference_labellings(scorer, task, examples, icm.rule_name_,  # asking the model once
                                          icm.zero_shot_scores_)  # (scored by the search's start when it could)
        reliability = assess(icm, examples, icm.labels_, references["zero_shot_rule"])  # no gold needed
        write_labels(out, examples, icm.labels_, icm.confidence_, task.choices, against=reliability["records"])
        write_jsonl(out / "conflicts.jsonl", icm.conflicts_)
        base = {
            "task": task.name, "labels": list(task.choices), "model": model_name, "dtype": dtype, "n": len(examples),
            "iterations": icm.n_iter_,
            "converged": icm.converged_, "evaluations": icm.evaluations_, "accepted": icm.accepted_, "U": icm.U_, "mutual_predictability": icm.mutual_predictability_,
            "inconsistencies": icm.inconsistencies_, "rule": icm.rule_name_, **coverage,
            "seconds": round(icm.seconds_, 2), "token_forwards": icm.token_forwards_, "seed": cfg.seed,
            "alpha": cfg.alpha, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
        compare = Path(job.compare_to) if job.compare_to else None
        base["clamp"] = clamp_effect(compare, clamped, examples, icm.labels_)
        base["reference"] = reference_report(examples, icm.labels_, references)
        base["reference_token_forwards"] = scorer.token_forwards - forwards
        base["reliability"] = report_reliability(reliability)
        if hasattr(scorer, "labels_below_top_k"):  # a served next-token scorer: labels floored outside its top-K
            base["labels_below_top_k"] = scorer.labels_below_top_k
        report = build_report(out, examples, base, task.choices)
        write_json(out / "report.json", report)
        plot_progress(out, examples, icm.history_, references={
            REFERENCE_NAMES[k]: v["accuracy"] for k, v in report["reference"].items() if v["accuracy"] is not None})
        write_jsonl(out / "history.jsonl", icm.history_)
    for hook in job.hooks:
        hook.after_label(job, out)
    _print_summary(out, report)
    return RunFolder.read(out)


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
    rel = report.get("reliability")
    if rel is not None:
        print("icm: " + reliability_line(rel))
    if report.get("rule_note"):
        print(f"icm: note: {report['rule_note']}")
    if report.get("collapsed_to_one_class"):
        print("icm: WARNING: the labelling collapsed to (almost) one class; see report.json")
    print(f"icm: labels:  {out / 'labels.jsonl'}")
    print(f"icm: report:  {out / 'report.json'}  (plot: {out / 'progress.png'})")


def _model_dtype(scorer) -> str | None:
    """The dtype the native scorer's model runs in (``--dtype auto`` depends on the CPU); None for a backend."""
    from icm_plugin.scoring.hardware import dtype_name

    dtype = getattr(getattr(scorer, "model", None), "dtype", None)
    return dtype_name(dtype) if dtype is not None else None
