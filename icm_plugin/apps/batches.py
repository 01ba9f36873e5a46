"""`icm label --batch-size N`: label a pool bigger than one prompt in batches, as the paper does (256 at a time).

The pool is split by consistency group (a group is never split: its rule only binds inside one search), each
batch is labelled by its own ICM search in ``batches/NNN/`` (a complete run folder with its checkpoint), and
the batches are merged into one run folder: ``labels.jsonl`` (pool order), ``conflicts.jsonl`` and
``history.jsonl`` (each row with its ``batch``), ``batches.json`` (the split) and ``report.json`` with
per-batch and total figures.

Resumable per batch: with ``--resume`` a batch whose ``report.json`` exists is not redone, and an interrupted
one continues from its checkpoint. Batches run one after another, or in threads when the scorer says its
backend takes several searches at once (``parallel_capacity`` > 1, e.g. an API backend with
``num_concurrent``; each thread gets ``scorer.fork()``) or has several servers (``scorer.replicas``, e.g.
``base_url=A|B``: each batch runs on a free server, ``parallel_capacity`` batches per server); ``--executor``
chooses (``sequential``, ``threads``, or ``ray``: each batch a Ray task with its own scorer, on a local or a
joined cluster, see ``icm_plugin.apps.executors``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import platform
import queue
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from icm_plugin.apps.executors import RayCluster, check_executor, is_served, task_device
from icm_plugin.apps.preflight import check_checkpoint, check_clamp, check_pool_memory, rule_coverage
from icm_plugin.core.examples import Example, Groups
from icm_plugin.core.run_folder import RunFolder
from icm_plugin.core.rundir import RunDir
from icm_plugin.core.tasks import Task, write_task_file
from icm_plugin.core.writers import (
    build_report,
    plot_progress,
    read_jsonl,
    write_examples,
    write_json,
    write_jsonl,
    write_labels,
)
from icm_plugin.errors import ICMError
from icm_plugin.method.baselines import reference_labellings
from icm_plugin.method.icm_config import ICMConfig
from icm_plugin.method.job import LabelJob, job_task, load_pool
from icm_plugin.method.reliability import assess, merge_reliability, report_reliability
from icm_plugin.method.search import ICM
from icm_plugin.scoring.base import Scorer
from icm_plugin.scoring.registry import ModelSpec

MANIFEST = "batches.json"


def split_by_group(examples: Sequence[Example], batch_size: int) -> list[list[Example]]:
    """Batches of at most ``batch_size`` examples (about equal sizes), whole consistency groups only.

    Groups are dealt in a stable hashed order of their ids (so each batch mixes topics and the split does not
    depend on the file order); the examples keep their pool order inside a batch. A group larger than
    ``batch_size`` gets a batch of its own. Raises ICMError for ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ICMError(f"--batch-size must be at least 1, got {batch_size}")
    groups = Groups(examples).members
    dealt = [groups[g] for g in sorted(groups, key=lambda g: hashlib.sha1(g.encode()).hexdigest())]
    n_batches = max(1, math.ceil(len(examples) / batch_size))
    while True:  # the fewest batches whose even share leaves no remainder batch
        batches = _deal(dealt, len(examples), batch_size, n_batches)
        if len(batches) <= n_batches:
            break
        n_batches += 1
    return [[examples[i] for i in sorted(b)] for b in batches]


def _deal(groups: list[list[int]], n: int, batch_size: int, n_batches: int) -> list[list[int]]:
    left, batches, current = n, [], []
    target = math.ceil(left / n_batches)  # recomputed per batch so sizes stay even
    for members in groups:
        if current and (len(current) + len(members) > batch_size or len(current) >= target):
            batches.append(current)
            left -= len(current)
            current = []
            target = math.ceil(left / max(1, n_batches - len(batches)))
        current.extend(members)
    if current:
        batches.append(current)
    return batches


def batch_name(index: int) -> str:
    return f"{index:03d}"


def label_in_batches(job: LabelJob) -> RunFolder:
    """``label(job)`` with ``job.batch_size`` (`icm label --batch-size N`): one search per batch, merged into
    one run folder, which it returns. Raises ICMError for user mistakes."""
    executor = job.executor
    check_executor(executor, job.ray_address)
    task = job_task(job)
    examples = load_pool(job, task)
    clamped = job.clamps()
    check_clamp(clamped, examples, job.clamp_source)
    rule = job.rule or task.rule_for(examples)
    batches = split_by_group(examples, job.batch_size or 0)
    with contextlib.ExitStack() as stack:
        gpus = 0
        if executor == "ray":  # joined before anything is written: an unreachable cluster leaves no trace
            cluster = stack.enter_context(RayCluster(job.ray_address))
            gpus = cluster.gpus_per_batch(job.model)
            job = replace(job, model=cluster.pin_dtype(job.model, gpus))
        return _label_batches(job, task, examples, clamped, rule, batches, gpus)


def _label_batches(job: LabelJob, task: Task, examples: list[Example], clamped: dict[str, int], rule: str,
                   batches: list[list[Example]], gpus: int) -> RunFolder:
    executor = job.executor
    model_name = job.model.display_name
    out = job.out_dir(task)
    cfg = job.config
    info = job.run_info(task, rule)
    manifest = {"batch_size": job.batch_size, "seed": cfg.seed,
                "batches": [{"batch": batch_name(b), "ids": [e.id for e in batch]} for b, batch in enumerate(batches)]}
    with RunDir.open(out, job.resume) as run_dir, run_dir.guard():
        _check_manifest(out / MANIFEST, manifest)
        if job.resume:  # every batch's checkpoint, finished ones too, before anything is written
            for b, batch in enumerate(batches):
                ids = {e.id for e in batch}
                check_checkpoint(out / "batches" / batch_name(b) / "checkpoint.json", batch,
                                 replace(cfg, seed=cfg.seed + b), {i: y for i, y in clamped.items() if i in ids}, info)
        coverage = rule_coverage(examples, rule, job.data or task.name)
        scorer = None  # on Ray each task builds its own, and checks its batch's memory there
        if executor != "ray":
            scorer = job.model.build(task.label_words, task.fewshot_delimiter)
            for batch in batches:
                check_pool_memory(scorer, task, batch, job.data or f"the {task.name} pool")
        write_json(out / MANIFEST, manifest)
        write_examples(out, examples)
        write_task_file(task, out)
        write_json(out / "config.json", job.config_record(task, rule, batch_size=job.batch_size,
                                                          batches=len(batches), batch_seeds="seed + batch index",
                                                          executor=executor))

        where = f" as Ray tasks ({gpus} GPU each)" if executor == "ray" else ""
        print(f"icm: labelling {len(examples)} examples of task {task.name!r} with {model_name} in {len(batches)} "
              f"batches of <= {job.batch_size}{where} -> {out}")
        runner = BatchRunner(scorer, task, cfg, rule=job.rule, resume=job.resume, run_info=info, executor=executor,
                             model=job.model, gpus=gpus)
        summaries = runner.run(batches, clamped, out / "batches")
        report = merge_batches(out, examples, batches, summaries, base={
            "task": task.name, "model": model_name, "seed": cfg.seed, "alpha": cfg.alpha, "rule": rule, **coverage,
            "batch_size": job.batch_size, "clamp": {"clamped": len(clamped)},
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip()})
    for hook in job.hooks:
        hook.after_label(job, out)
    print(f"icm: done: n={report['n']} in {len(batches)} batches, inconsistencies={report['inconsistencies']} "
          f"{report['seconds']:.0f}s {report['token_forwards']} token-forwards"
          + (f"; vs gold: accuracy={report['accuracy']:.3f}" if report.get("accuracy") is not None else ""))
    print(f"icm: labels:  {out / 'labels.jsonl'}")
    print(f"icm: report:  {out / 'report.json'}  (per batch: {out / 'batches'}/NNN/)")
    return RunFolder.read(out)


class BatchRunner:
    """Runs one ICM search per batch into ``root/NNN/``; skips finished batches, resumes interrupted ones.

    ``executor``: ``sequential`` (one batch after another), ``threads`` or None (the default: threads where the
    backend takes several searches at once), or ``ray`` (each batch a Ray task on the cluster this process is
    connected to, building its scorer from ``model`` on ``gpus`` GPUs; ``scorer`` is not used and may be None).
    ``workers`` defaults to ``parallel_capacity`` summed over ``scorer.replicas`` (the scorer itself when it has
    none; 1 for the native scorers): with more, batches run in threads, each on a fork of a free replica so token
    counts stay per batch.
    """

    def __init__(self, scorer: Scorer | None, task: Task, config: ICMConfig, rule: str | None = None,
                 resume: bool = False, workers: int | None = None, run_info: dict[str, Any] | None = None,
                 executor: str | None = None, model: ModelSpec | None = None, gpus: int = 0):
        check_executor(executor)
        if executor == "ray" and model is None:
            raise ICMError("the ray executor builds each batch's scorer from a ModelSpec: pass model=")
        self.scorer = scorer
        self.run_info = run_info
        self.task = task
        self.config = config
        self.rule = rule
        self.resume = resume
        self.executor = executor
        self.model = model
        self.gpus = gpus
        self.replicas = list(getattr(scorer, "replicas", None) or [scorer])
        capacity = sum(max(1, int(getattr(r, "parallel_capacity", 1))) for r in self.replicas)
        self.workers = max(1, workers if workers is not None else capacity)
        if executor in ("sequential", "ray") or (self.workers > 1 and not hasattr(scorer, "fork")):
            self.workers = 1

    def __getstate__(self) -> dict[str, Any]:  # shipped to Ray tasks: without the driver's scorer
        return {**self.__dict__, "scorer": None, "replicas": []}

    def run(self, batches: Sequence[Sequence[Example]], clamped: dict[str, int], root: Path) -> list[dict[str, Any]]:
        """Label every batch; returns one summary per batch (from its report.json), in batch order."""
        root.mkdir(parents=True, exist_ok=True)
        jobs = []
        for b, batch in enumerate(batches):
            ids = {e.id for e in batch}
            jobs.append((b, list(batch), {i: y for i, y in clamped.items() if i in ids}))
        if self.executor == "ray":
            return self._run_on_ray(jobs, root)
        if self.workers == 1:
            return [self.label_batch(self.scorer, b, batch, clamp, root, progress=True) for b, batch, clamp in jobs]
        free: queue.SimpleQueue = queue.SimpleQueue()  # a replica per slot: each batch takes a free one
        for k in range(self.workers):
            free.put(self.replicas[k % len(self.replicas)])

        def on_a_free_replica(b: int, batch: list[Example], clamp: dict[str, int]) -> dict[str, Any]:
            replica = free.get()
            try:
                return self.label_batch(replica.fork(), b, batch, clamp, root, False)
            finally:
                free.put(replica)

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="icm-batch") as pool:
            futures = [pool.submit(on_a_free_replica, b, batch, clamp) for b, batch, clamp in jobs]
            return [f.result() for f in futures]

    def _run_on_ray(self, jobs: list[tuple[int, list[Example], dict[str, int]]], root: Path) -> list[dict[str, Any]]:
        """The batches not finished earlier as Ray tasks (``_label_on_ray``), a progress bar over batches."""
        summaries: dict[int, dict[str, Any]] = {}
        for b, batch, _ in jobs:
            summary = self.finished(b, batch, root)
            if summary is not None:
                summaries[b] = summary
        todo = [(b, batch, clamp, root.resolve()) for b, batch, clamp in jobs if b not in summaries]
        if todo:  # on the cluster this process joined (label_in_batches), else on a local one for this call
            with RayCluster() as cluster:
                done = cluster.map(self._label_on_ray, todo, self.gpus, desc=f"icm: {len(todo)} batches on Ray")
            summaries.update({b: s for (b, *_), s in zip(todo, done, strict=True)})
        return [summaries[b] for b, _, _ in jobs]

    def _label_on_ray(self, job: tuple[int, list[Example], dict[str, int], Path]) -> dict[str, Any]:
        """One batch inside a Ray task: its own scorer (the device Ray assigned), its memory check, its search
        (continuing from the batch's checkpoint when an earlier attempt left one)."""
        index, batch, clamp, root = job
        if not root.is_dir():
            raise ICMError(f"{root} is not visible on the Ray node {socket.gethostname()}: put --out on a file "
                           "system every node mounts at the same path")
        spec = self.model
        if not is_served(spec):
            spec = replace(spec, device=task_device())
        scorer = spec.build(self.task.label_words, self.task.fewshot_delimiter)
        check_pool_memory(scorer, self.task, batch, f"batch {batch_name(index)}")
        return self.label_batch(scorer, index, batch, clamp, root, progress=False, resume=True)

    def finished(self, index: int, batch: Sequence[Example], root: Path) -> dict[str, Any] | None:
        """The summary of a batch finished earlier (its report.json), or None. ICMError: other examples."""
        done = root / batch_name(index) / "report.json"
        if not done.exists():
            return None
        summary = read_json(done)
        if summary.get("ids") != [e.id for e in batch]:
            raise ICMError(f"{done}: this batch folder holds other examples; use another --out")
        print(f"icm: batch {batch_name(index)}: done earlier, kept")
        return summary

    def label_batch(self, scorer: Scorer, index: int, batch: list[Example], clamped: dict[str, int], root: Path,
                    progress: bool = True, resume: bool | None = None) -> dict[str, Any]:
        """One batch's search and run folder; a batch with a report.json is done and only read back.
        ``resume``: continue from the batch's checkpoint (default: the runner's ``resume``)."""
        summary = self.finished(index, batch, root)
        if summary is not None:
            return summary
        folder = root / batch_name(index)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = replace(self.config, seed=self.config.seed + index)
        icm = ICM(scorer, self.task, cfg, rule=self.rule)
        t0 = time.perf_counter()
        icm.fit(batch, clamped=clamped, checkpoint=folder / "checkpoint.json",
                resume=self.resume if resume is None else resume, progress=progress, run_info=self.run_info)
        write_examples(folder, batch)
        zero_shot_rule = reference_labellings(scorer, self.task, batch, icm.rule_name_,
                                              icm.zero_shot_scores_)["zero_shot_rule"]
        reliability = assess(icm, batch, icm.labels_, zero_shot_rule)
        write_labels(folder, batch, icm.labels_, icm.confidence_, self.task.choices, against=reliability["records"])
        write_jsonl(folder / "conflicts.jsonl", icm.conflicts_)
        write_jsonl(folder / "history.jsonl", icm.history_)
        plot_progress(folder, batch, icm.history_)
        base = {"batch": batch_name(index), "n": len(batch), "seed": cfg.seed, "iterations": icm.n_iter_,
                "accepted": icm.accepted_, "U": icm.U_, "mutual_predictability": icm.mutual_predictability_,
                "inconsistencies": icm.inconsistencies_, "rule": icm.rule_name_,
                "seconds": round(icm.seconds_, 2), "token_forwards": icm.token_forwards_,
                "wall_seconds_this_run": round(time.perf_counter() - t0, 2), "scorer": scorer.name,
                "labels_below_top_k": getattr(scorer, "labels_below_top_k", None),
                "reliability": report_reliability(reliability), "ids": [e.id for e in batch]}
        report = build_report(folder, batch, base, self.task.choices)
        write_json(folder / "report.json", report)  # written last: its presence marks the batch finished
        if not progress:
            print(f"icm: batch {batch_name(index)}: n={len(batch)} U={icm.U_:.3f} {icm.seconds_:.0f}s")
        return report


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ICMError(f"{path}: not valid JSON ({err.msg}); delete the batch folder to redo it") from None


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    if not path.exists():
        return
    old = read_json(path)
    if old != manifest:
        raise ICMError(f"{path}: this run folder was split differently (other pool, --batch-size or --seed); "
                       "resume with the same settings or choose another --out")


# per-batch figures copied into the merged report
_BATCH_FIELDS = ("batch", "n", "seed", "iterations", "accepted", "U", "mutual_predictability", "inconsistencies",
                 "seconds", "token_forwards", "accuracy", "balanced_accuracy", "collapsed_to_one_class",
                 "label_balance", "reliability")


def merge_batches(out: Path, examples: Sequence[Example], batches: Sequence[Sequence[Example]],
                  summaries: Sequence[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """Write the merged labels/conflicts/history and report.json of a batched run; returns the report.

    Totals: ``seconds`` and ``token_forwards`` are sums over batches (search time, not counting model
    loading), ``inconsistencies`` the sum, ``mutual_predictability`` the n-weighted mean of the batches' P,
    ``U = alpha * P - I`` of those, accuracy over the whole pool.
    """
    rows: dict[str, dict[str, Any]] = {}
    conflicts: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for b, _ in enumerate(batches):
        folder = out / "batches" / batch_name(b)
        rows.update({r["id"]: r for r in read_jsonl(folder / "labels.jsonl")})
        conflicts += [{"batch": batch_name(b), **r} for r in read_jsonl(folder / "conflicts.jsonl")]
        history += [{"batch": batch_name(b), **r} for r in read_jsonl(folder / "history.jsonl")]
    missing = [e.id for e in examples if e.id not in rows]
    if missing:
        raise ICMError(f"{out / 'batches'}: no label for example id {missing[0]!r}; re-run with --resume")
    write_jsonl(out / "labels.jsonl", [rows[e.id] for e in examples])
    write_jsonl(out / "conflicts.jsonl", conflicts)
    write_jsonl(out / "history.jsonl", history)
    n = sum(s["n"] for s in summaries)
    p = sum(s["n"] * s["mutual_predictability"] for s in summaries) / n if n else 0.0
    inconsistencies = sum(s["inconsistencies"] for s in summaries)
    report = dict(base)
    report.update({
        "n": n, "batches": len(summaries), "iterations": sum(s["iterations"] for s in summaries),
        "accepted": sum(s["accepted"] for s in summaries), "mutual_predictability": p,
        "inconsistencies": inconsistencies, "U": base["alpha"] * p - inconsistencies,
        "seconds": round(sum(s["seconds"] for s in summaries), 2),
        "token_forwards": sum(s["token_forwards"] for s in summaries),
    })
    rated = [(s["n"], s["reliability"]) for s in summaries if "reliability" in s]
    if rated and len(rated) == len(summaries):  # batches finished by an older version have no verdict
        report["reliability"] = merge_reliability(rated)
    report = build_report(out, examples, report)
    report["per_batch"] = [{k: s.get(k) for k in _BATCH_FIELDS} for s in summaries]
    write_json(out / "report.json", report)
    return report
