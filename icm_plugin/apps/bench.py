"""`icm bench`: the paper's comparison (Wen et al. 2025, Figure 1) on one model, one pool and one held-out test split.

For each seed, on the pool side of the lm-eval split (``icm_plugin.integrations.lmeval.split``):

- label accuracy of zero-shot labels (per example, and decoded under the task's rule), random labels, ICM, ICM
  without the consistency term (``rule="none"``, the paper's Figure 10 ablation) and the bootstrapping baseline;
- test accuracy of many-shot prompting, the whole labelled pool as demonstrations, with each label set (and of
  plain zero-shot prompting), scored directly through the ``Scorer``;
- test accuracy of the model fine-tuned on ICM's labels and on the gold labels, through the ``icm_<task>``
  lm-eval task (its test split, ``limit`` = the bench's test size), or scored directly for tasks without one.

Writes ``bench.json`` (every number, per seed, updated after each seed), ``bench.md`` (mean ± standard deviation
over seeds) and ``bench.png`` (bars in the style of the paper's Figure 1); ``seed<S>/`` holds each seed's ICM run
folders (labels.jsonl, checkpoints: ``resume`` continues an interrupted bench). The table and the chart:
``icm_plugin.apps.bench_report``; the command: ``icm_plugin.cli.bench_cli``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from icm_plugin.apps.bench_report import (
    COLUMNS,
    FINE_TUNED,
    LABEL_SETS,
    NAMES,
    RESULTS_FILE,
    ZERO_SHOT,
    markdown_report,
    markdown_table,
    plot_bench,
)
from icm_plugin.apps.train import TrainConfig
from icm_plugin.core.examples import Example
from icm_plugin.core.metrics import accuracy, balanced_accuracy
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import Scorer, ScoreRequest


@dataclass
class BenchConfig:
    """What ``icm bench`` runs. ``limit``: pool size (whole groups); ``test_limit``: test examples (first N of the
    test split; default = ``limit``); ``seeds``: how many (0..seeds-1); ``iterations``/``alpha``: ICM's (None =
    ``ICMConfig`` defaults); ``shots``: demonstrations per many-shot prompt (None = the whole pool);
    ``finetune``: also fine-tune on ICM and golden labels (``train`` settings)."""

    task: str = "facts"
    model: str = "gemma-3-270m"
    data: str | None = None
    data_dir: str | None = None
    limit: int = 32
    test_limit: int | None = None
    seeds: int = 3
    iterations: int | None = None
    alpha: float | None = None
    bootstrap_rounds: int = 3
    shots: int | None = None
    finetune: bool = True
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2.0))
    dtype: str = "auto"
    device: str | None = None
    keep_models: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- data ---------------------------------------------------------------------------------------------------------


def bench_split(cfg: BenchConfig, task: Task) -> tuple[list[Example], list[Example]]:
    """(pool, test): the lm-eval split of the task's data; the pool cut to ``limit`` (whole groups), the test set
    to its first ``test_limit`` examples (what lm-eval's ``--limit`` takes)."""
    from icm_plugin.core.loaders import limit_pool
    from icm_plugin.integrations.lmeval.cli import task_examples
    from icm_plugin.integrations.lmeval.split import split_pool

    pool, test = split_pool(task_examples(task, cfg.data, cfg.data_dir))
    if not pool or not test:
        raise ICMError(f"{cfg.task}: the pool/test split left one side empty; give more data")
    pool = limit_pool(pool, cfg.limit) if cfg.limit else pool
    test = test[: cfg.test_limit or cfg.limit or len(test)]
    for name, side in (("pool", pool), ("test", test)):
        missing = [e.id for e in side if e.label is None]
        if missing:
            raise ICMError(f"{cfg.task}: {len(missing)} {name} examples have no gold label (e.g. id {missing[0]!r}); "
                           "the bench measures against gold")
    return pool, test


# ---- measurements -------------------------------------------------------------------------------------------------


def many_shot_scores(scorer: Scorer, task: Task, pool: Sequence[Example], labels: Sequence[int],
                     order: Sequence[int], test: Sequence[Example]) -> np.ndarray:
    """log p(label word) for each test example, after the pool's examples (in ``order``) with ``labels``."""
    demos = tuple(task.demonstration(pool[i], int(labels[i])) for i in order)
    return scorer.label_logprobs([ScoreRequest(demos, task.prompt(e)) for e in test])


def _scores(pred: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    return {"accuracy": accuracy(pred, gold), "balanced_accuracy": balanced_accuracy(pred, gold),
            "true_rate": float(np.mean(pred))}


def test_scores(scores: np.ndarray, test: Sequence[Example], rule: str) -> dict[str, float]:
    """Per-claim accuracy (argmax of each claim, lm-eval's ``acc``) and ``accuracy_rule``: the claims decoded
    together under the task's rule (one True per question), which a small model's biased p(True) needs."""
    from icm_plugin.method.bootstrap import rule_decode

    gold = [int(e.label) for e in test]
    out = _scores([int(r[1] > r[0]) for r in scores], gold)
    out["accuracy_rule"] = accuracy(rule_decode(scores, test, rule), gold)
    return out


def lmeval_accuracy(folder: str | Path, cfg: BenchConfig, test: Sequence[Example], rule: str) -> dict[str, float]:
    """Zero-shot accuracy of the model in ``folder`` on the ``icm_<task>`` lm-eval task's first ``len(test)`` test
    docs: lm-eval's ``acc`` and, from its per-doc log-likelihoods, the rule-decoded accuracy."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from icm_plugin.core.discovery import tasks_dir
    from icm_plugin.scoring.hardware import pick_device, resolve_dtype

    device = pick_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    with _lmeval_data_dir(cfg) as data_dir:
        metadata = {"data_dir": data_dir} if data_dir else {}
        # only our task folder: indexing lm-eval's thousands of task YAMLs costs more than the evaluation here
        manager = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata=metadata)
        results = simple_evaluate(
            model="hf", model_args={"pretrained": str(folder), "dtype": dtype}, tasks=[f"icm_{cfg.task}"],
            num_fewshot=0, batch_size=16, device=device, limit=len(test), log_samples=True, bootstrap_iters=0,
            task_manager=manager, verbosity="WARNING",
        )
    row = results["results"][f"icm_{cfg.task}"]
    lls = {s["doc"]["id"]: [ll for ll, _ in s["filtered_resps"]] for s in results["samples"][f"icm_{cfg.task}"]}
    if set(lls) != {e.id for e in test}:
        raise ICMError(f"icm_{cfg.task}: lm-eval scored other test examples than the bench's; is its data the same?")
    out = test_scores(np.asarray([lls[e.id] for e in test], dtype=float), test, rule)
    out["accuracy"] = float(row["acc,none"])  # lm-eval's own figure (the same as the argmax above)
    return out


class _lmeval_data_dir:
    """The ``data_dir`` lm-eval reads for the bench's data: none (task default), ``--data-dir``, or a temp folder
    holding a link to ``--data`` under the name the task looks for."""

    def __init__(self, cfg: BenchConfig):
        self.cfg = cfg
        self.tmp: str | None = None

    def __enter__(self) -> str | None:
        if self.cfg.data is None:
            return self.cfg.data_dir
        self.tmp = tempfile.mkdtemp(prefix="icm-bench-data-")
        src = Path(self.cfg.data).resolve()
        os.symlink(src, Path(self.tmp) / f"{self.cfg.task}{src.suffix}")
        return self.tmp

    def __exit__(self, *exc: Any) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def has_lmeval_task(cfg: BenchConfig) -> bool:
    """True when lm-eval's ``icm_<task>`` reads the same examples as the bench (a file, a folder or the default)."""
    from icm_plugin.integrations.lmeval.sources import LMEVAL_TASKS

    if cfg.task not in LMEVAL_TASKS:
        return False
    return cfg.data is None or (Path(cfg.data).is_file() and Path(cfg.data).suffix in (".json", ".jsonl"))


# ---- one seed -------------------------------------------------------------------------------------------------------


def run_seed(seed: int, cfg: BenchConfig, task: Task, scorer: Scorer, pool: list[Example], test: list[Example],
             zero_shot_pool: np.ndarray, out: Path, resume: bool, progress: bool, say=print) -> dict[str, Any]:
    """Every measurement of one seed; ICM run folders go to ``out/seed<seed>/``."""
    from icm_plugin.core.writers import write_json, write_jsonl, write_labels
    from icm_plugin.method.bootstrap import Bootstrap, rule_decode
    from icm_plugin.method.search import ICM, ICMConfig

    gold = [int(e.label) for e in pool]
    rng = np.random.default_rng(10_000 + seed)
    rule = task.rule_for(pool)
    labels: dict[str, list[int]] = {}
    seconds: dict[str, float] = {}
    labels["zero_shot"] = [int(s[1] > s[0]) for s in zero_shot_pool]
    labels["zero_shot_rule"] = rule_decode(zero_shot_pool, pool, rule)
    labels["random"] = [int(y) for y in rng.integers(0, 2, len(pool))]

    icm_cfg = ICMConfig(seed=seed)
    if cfg.iterations is not None:
        icm_cfg = replace(icm_cfg, iterations=cfg.iterations)
    if cfg.alpha is not None:
        icm_cfg = replace(icm_cfg, alpha=cfg.alpha)
    extra: dict[str, Any] = {}
    for key, rule_override in (("icm", None), ("icm_no_consistency", "none")):
        run = out / f"seed{seed}" / key
        run.mkdir(parents=True, exist_ok=True)
        if resume and (run / "summary.json").exists():  # a finished search: its labels are final
            done = json.loads((run / "summary.json").read_text())
            labels[key], extra[key], seconds[key] = done["labels"], done["details"], done["seconds"]
            continue
        say(f"icm bench: seed {seed}: {NAMES[key]} ({icm_cfg.iterations or 'default'} steps)")
        t = time.perf_counter()
        icm = ICM(scorer, task, icm_cfg, rule=rule_override).fit(pool, checkpoint=run / "checkpoint.json",
                                                                  resume=resume, progress=progress)
        seconds[key] = round(time.perf_counter() - t, 2)
        labels[key] = icm.labels_
        write_labels(run, pool, icm.labels_, icm.confidence_)
        write_jsonl(run / "history.jsonl", icm.history_)
        extra[key] = {"U": icm.U_, "mutual_predictability": icm.mutual_predictability_,
                      "inconsistencies": icm.inconsistencies_, "accepted": icm.accepted_,
                      "iterations": icm.n_iter_, "token_forwards": icm.token_forwards_}
        write_json(run / "summary.json", {"labels": labels[key], "details": extra[key], "seconds": seconds[key]})

    # golden = gold labels of exactly the examples ICM labelled: lm-eval's like-for-like "gold:RUN_DIR" source
    from icm_plugin.integrations.lmeval.demonstrations import GOLD_OF_RUN, demonstration_labels

    golden_source = GOLD_OF_RUN + str(out / f"seed{seed}" / "icm")
    golden = demonstration_labels(golden_source, pool, test)
    labels["golden"] = [golden[e.id] for e in pool if e.id in golden]
    if len(labels["golden"]) != len(pool):
        raise ICMError(f"{golden_source}: ICM labelled {len(golden)} of the {len(pool)} pool examples")
    extra["golden"] = {"source": golden_source}

    say(f"icm bench: seed {seed}: bootstrap ({cfg.bootstrap_rounds} rounds)")
    t = time.perf_counter()
    boot = Bootstrap(scorer, task, rounds=cfg.bootstrap_rounds, seed=seed).fit(pool, initial_scores=zero_shot_pool)
    seconds["bootstrap"] = round(time.perf_counter() - t, 2)
    labels["bootstrap"] = boot.labels_
    extra["bootstrap"] = {"rounds": boot.rounds_, "history": boot.history_, "token_forwards": boot.token_forwards_}

    pool_acc = {key: _scores(labels[key], gold) for key, _ in LABEL_SETS}

    say(f"icm bench: seed {seed}: many-shot prompting on {len(test)} test examples")
    order = [int(i) for i in rng.permutation(len(pool))][: cfg.shots or len(pool)]
    t = time.perf_counter()
    many_shot = {ZERO_SHOT: test_scores(_zero_shot(scorer, task, test), test, rule)}
    for key, _ in LABEL_SETS:
        many_shot[key] = test_scores(many_shot_scores(scorer, task, pool, labels[key], order, test), test, rule)
    seconds["many_shot"] = round(time.perf_counter() - t, 2)

    fine_tuned: dict[str, dict[str, float]] = {}
    if cfg.finetune:
        fine_tuned, ft_seconds = _fine_tune_all(seed, cfg, task, pool, test, labels, out, progress, say, rule)
        seconds.update(ft_seconds)
    return {"seed": seed, "pool_accuracy": pool_acc, "many_shot": many_shot, "fine_tuned": fine_tuned,
            "seconds": seconds, "details": extra, "demonstrations": len(order)}


def _zero_shot(scorer: Scorer, task: Task, examples: Sequence[Example]) -> np.ndarray:
    from icm_plugin.method.baselines import zero_shot_scores

    return zero_shot_scores(scorer, task, examples)


def _fine_tune_all(seed, cfg, task, pool, test, labels, out, progress, say, rule):
    from icm_plugin.apps.train import fine_tune

    results, seconds = {}, {}
    for key in FINE_TUNED:
        folder = out / f"seed{seed}" / f"model-{key}"
        say(f"icm bench: seed {seed}: fine-tuning on {NAMES[key]}")
        t = time.perf_counter()
        train_cfg = replace(cfg.train, seed=seed)
        trained = fine_tune(cfg.model, task, list(zip(pool, labels[key], strict=True)), folder, train_cfg,
                            device=cfg.device, progress=progress)
        if has_lmeval_task(cfg):
            scores = lmeval_accuracy(folder, cfg, test, rule)
            scores["via"] = "lm-eval"
        else:
            scores = _direct_accuracy(folder, cfg, task, test, rule)
            scores["via"] = "scorer"
        scores["train_loss_last"] = trained.train_loss_last
        scores["heldout_loss_after"] = trained.heldout_loss_after
        results[key] = scores
        seconds[f"fine_tune_{key}"] = round(time.perf_counter() - t, 2)
        if not cfg.keep_models:
            shutil.rmtree(folder, ignore_errors=True)
    return results, seconds


def _direct_accuracy(folder: Path, cfg: BenchConfig, task: Task, test: Sequence[Example], rule: str) -> dict[str, float]:
    from icm_plugin.scoring.models import load_model
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    model, tokenizer = load_model(str(folder), dtype=cfg.dtype, device=cfg.device)
    return test_scores(_zero_shot(PrefixSharingScorer(model, tokenizer, task.label_words), task, test), test, rule)


# ---- the whole bench ------------------------------------------------------------------------------------------------


def run_bench(cfg: BenchConfig, out: str | Path, resume: bool = False, progress: bool = True, say=print) -> dict:
    """Run every seed (skipping seeds already in ``out/bench.json`` when ``resume``; a larger ``seeds`` adds seeds),
    write the files, return them.

    Raises ICMError when ``out`` holds another bench (without ``resume``) or one made with other settings.
    """
    from icm_plugin.core.tasks import get_task
    from icm_plugin.scoring.models import load_model, model_display_name
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    out = Path(out)
    task = get_task(cfg.task)
    results_path = out / RESULTS_FILE
    settings = cfg.to_dict()
    done: list[dict[str, Any]] = []
    if results_path.exists():
        if not resume:
            raise ICMError(f"{out} already holds a bench; pass --resume to continue it, or choose another --out")
        previous = json.loads(results_path.read_text())
        if {**previous["settings"], "seeds": cfg.seeds} != settings:  # more seeds may be added later
            raise ICMError(f"{results_path} was made with other settings; resume with the same options or use another --out")
        done = previous["seeds"]
    out.mkdir(parents=True, exist_ok=True)
    pool, test = bench_split(cfg, task)
    say(f"icm bench: {task.name}: pool {len(pool)} examples, test {len(test)}, {cfg.seeds} seeds, model {cfg.model} -> {out}")
    model, tokenizer = load_model(cfg.model, dtype=cfg.dtype, device=cfg.device)
    scorer = PrefixSharingScorer(model, tokenizer, task.label_words)
    t = time.perf_counter()
    zero_shot_pool = _zero_shot(scorer, task, pool)
    zero_shot_seconds = round(time.perf_counter() - t, 2)
    blob = {"settings": settings, "model": model_display_name(cfg.model), "task": task.name, "rule": task.rule_for(pool),
            "n_pool": len(pool), "n_test": len(test), "zero_shot_seconds": zero_shot_seconds, "seeds": done}
    for seed in range(cfg.seeds):
        if any(r["seed"] == seed for r in done):
            continue
        t = time.perf_counter()
        result = run_seed(seed, cfg, task, scorer, pool, test, zero_shot_pool, out, resume, progress, say)
        result["seconds"]["total"] = round(time.perf_counter() - t, 2)
        done.append(result)
        write_results(out, blob)  # after every seed: --resume picks up from here
    write_results(out, blob)
    return blob


def write_results(out: Path, blob: dict[str, Any]) -> None:
    """bench.json, bench.md and bench.png from the results so far."""
    from icm_plugin.core.writers import write_json

    write_json(out / RESULTS_FILE, blob)
    (out / "bench.md").write_text(markdown_report(blob), encoding="utf-8")
    plot_bench(blob, out / "bench.png")


__all__ = ["COLUMNS", "LABEL_SETS", "NAMES", "ZERO_SHOT", "BenchConfig", "markdown_table", "run_bench",
           "write_results"]
