"""The ``!function`` hooks that the ``icm_*`` task YAMLs (top-level ``tasks/``) name; imported by lm-eval only.

``icm_dataset`` builds two splits: ``test`` (scored; target = gold) and ``pool`` (the demonstrations; label = the
chosen labels source). Each doc carries the record values the task file's ``doc_to_text`` reads, which lm-eval
renders itself, so lm-eval scores exactly what ``icm label`` scores, and a many-shot context is the labeler's:
demonstrations (``Task.demonstration``) joined by the task's ``fewshot_delimiter``, then the prompt. The same hook
serves the built-in ``icm_*`` tasks and any task file ICM wrote (``tasks.write_task_file``: a run folder's
``task.yaml``), found by its name in the folder of the ``icm_hooks.py`` that lm-eval loaded.

``balanced_acc`` gets a standard error the way lm-eval gives one to its own corpus-level metrics (f1, mcc, bleu):
``lm_eval.api.metrics.bootstrap_stderr`` over ``--bootstrap_iters`` resamples of the test docs. lm-eval picks that
bootstrap from a fixed list of its own functions, so importing this module (lm-eval does when it loads the YAMLs)
adds ours to the choice: ``evaluator_utils.stderr_for_metric`` is wrapped once, and answers as before for every
other metric. The group's stderr then follows from the tasks' as lm-eval computes it for ``acc``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
from lm_eval.api.samplers import ContextSampler

from icm_plugin.core.examples import Example, group_key
from icm_plugin.core.loaders import load_examples
from icm_plugin.core.tasks import Task, get_task, load_task_file, read_yaml
from icm_plugin.core.writers import read_jsonl
from icm_plugin.errors import ICMError
from icm_plugin.integrations.lmeval.demonstrations import demonstration_labels, labels_for_task
from icm_plugin.integrations.lmeval.sources import LMEVAL_TASKS, load_task_examples
from icm_plugin.integrations.lmeval.split import split_pool

POOL, TEST = "pool", "test"
META = ("id", "label", "consistency_id", "split")


def _features(task: Task) -> datasets.Features:
    text = {v: datasets.Value("string") for v in task.variables}
    return datasets.Features({"id": datasets.Value("string"), **text, "label": datasets.Value("int64"),
                              "consistency_id": datasets.Value("string"), "split": datasets.Value("string")})


def _docs(task: Task, examples: Sequence[Example], labels: dict[str, int], split: str) -> datasets.Dataset:
    features = _features(task)
    rows = []
    for e in examples:
        if e.id not in labels:
            continue
        doc = task.doc(e)
        rows.append({"id": e.id, **{v: str(doc[v]) for v in task.variables}, "label": labels[e.id],
                     "consistency_id": group_key(e), "split": split})
    # column form: from_list cannot build an empty split (a pool with no labels) with a schema
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


def task_examples(name: str, folder: str | Path | None, data_dir: str | None, data: str | None,
                  ) -> tuple[Task, list[Example]]:
    """The task called ``name`` and all its examples (gold kept): a task file in ``folder`` (a run folder's
    ``task.yaml``; its data from ``data``, the file's dataset keys or the run's ``examples.jsonl``), else a
    built-in ``icm_*`` task (its data from ``data_dir``, the hub or the package). Raises ICMError."""
    path = find_task_file(name, Path(folder)) if folder is not None else None
    if path is None:
        spec = get_task(name)
        if data:
            return spec, load_examples(data, spec)
        return spec, load_task_examples(name, data_dir)
    spec = load_task_file(path)
    if data or spec.config.get("dataset_path"):
        return spec, load_examples(data, spec)
    run_examples = path.parent / "examples.jsonl"
    if not run_examples.is_file():
        raise ICMError(f"{path}: task {name!r} names no data: pass --metadata '{{\"data\": \"FILE.jsonl\"}}'")
    return spec, [Example.from_dict(r) for r in read_jsonl(run_examples)]


def find_task_file(name: str, folder: Path) -> Path | None:
    """The task file in ``folder`` whose ``task:`` (or ICM name) is ``name``; None when there is none."""
    for path in sorted(folder.glob("*.yaml")):
        try:
            config = read_yaml(path)
        except ICMError:
            continue
        icm = (config.get("metadata") or {}).get("icm") or {}
        if name in (config.get("task"), icm.get("name") if isinstance(icm, dict) else None) and "doc_to_text" in config:
            return path
    return None


def icm_dataset(task: str | None = None, data_dir: str | None = None, labels: Any = None, data: str | None = None,
                folder: str | None = None, icm: dict | None = None, **_metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset`` hook: the task's ``test`` and ``pool`` splits, built from lm-eval's ``--metadata``.

    ``task``: a built-in task (``dataset_kwargs``), else the task file's ``metadata.icm.name``, looked up first in
    ``folder`` (the hooks file's folder). ``data``: a file or dataset for the task's records (any task).
    ``data_dir``: folder of ICM-format files for the built-in tasks (else ``$ICM_DATA_DIR``, else the
    public/packaged data). ``labels``: ``RUN_DIR/labels.jsonl`` (or RUN_DIR), ``"gold"``, ``"gold:RUN_DIR"``, a
    dict naming every task of the run -> one of those, or None (zero-shot). Raises ICMError for a dict that
    leaves this task out. Other metadata (lm-eval adds the model args and the YAML's version) is ignored.
    """
    name = task or (icm or {}).get("name")
    if not name:
        raise ICMError("icm_dataset: the task file names no task (dataset_kwargs.task or metadata.icm.name)")
    display = f"icm_{name}" if name in LMEVAL_TASKS else name
    source = labels_for_task(labels, name, LMEVAL_TASKS)  # before reading any data: a bad dict fails at once
    spec, examples = task_examples(name, folder, data_dir, data)
    pool, test = split_pool(examples)
    if not test:
        raise ICMError(f"{display}: the held-out split is empty ({len(examples)} examples is too few to split)")
    unlabelled = [e.id for e in test if e.label is None]
    if unlabelled:
        raise ICMError(f"{display}: {len(unlabelled)} test examples have no gold label (e.g. id {unlabelled[0]!r}); "
                       "lm-eval scores against gold (doc_to_target)")
    # the guarantee the demonstrations rest on: no consistency group on both sides
    assert not {group_key(e) for e in pool} & {group_key(e) for e in test}, "split_pool split a consistency group"
    demo = demonstration_labels(source, pool, test)
    return datasets.DatasetDict({
        TEST: _docs(spec, test, {e.id: int(e.label) for e in test}, TEST),
        POOL: _docs(spec, pool, demo, POOL),
    })


class DemonstrationSampler(ContextSampler):
    """Draws ``num_fewshot`` labelled pool docs per test doc (lm-eval's seeded RNG), never from the test doc's group.

    Raises ICMError when demonstrations are asked for but no labels source was given, or too few pool docs
    have labels.
    """

    def _pool(self) -> list[dict[str, Any]]:
        # lm-eval >= 0.4.10 keeps the docs in ``df`` behind ``fewshot_docs()``; older versions in ``docs``
        docs = self.fewshot_docs() if callable(getattr(self, "fewshot_docs", None)) else getattr(self, "docs", [])
        return list(docs or [])

    def sample(self, n: int, eval_doc: dict[str, Any] | None = None, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        if n <= 0:
            return []
        docs = self._pool()
        if not docs:
            raise ICMError(
                f"--num_fewshot {n} needs labels for the demonstrations: --metadata "
                "'{\"labels\": \"RUN_DIR/labels.jsonl\"}' (ICM's labels for the pool), '{\"labels\": \"gold:RUN_DIR\"}' "
                "(gold labels of the same examples) or '{\"labels\": \"gold\"}' (gold labels of the whole pool)"
            )
        if eval_doc is not None:
            docs = [d for d in docs if d["consistency_id"] != eval_doc["consistency_id"]]
        if n > len(docs):
            raise ICMError(f"--num_fewshot {n}: only {len(docs)} pool examples have demonstration labels")
        chosen = self.rnd.sample(docs, n)
        assert all(d["split"] == POOL for d in chosen), "a demonstration came from outside the pool"
        return chosen


def process_results(doc: dict[str, Any], results: Sequence[tuple[float, bool]]) -> dict[str, Any]:
    """Per test doc: ``acc`` (argmax of the label words' log-likelihoods == gold) and the (gold, pred) pair."""
    lls = [ll for ll, _ in results]
    pred = max(range(len(lls)), key=lls.__getitem__)
    gold = int(doc["label"])
    return {"acc": float(pred == gold), "balanced_acc": (gold, pred)}


def balanced_accuracy(items: Sequence[tuple[int, int]]) -> float:
    """Corpus-level mean per-class recall over the (gold, pred) pairs: ``icm_plugin.core.metrics.balanced_accuracy``'s
    definition (classes present in gold), counted in plain Python because the bootstrap calls it 100,000 times
    (about 40 us for 250 docs, a quarter of the numpy version's time)."""
    total: dict[int, int] = {}
    hits: dict[int, int] = {}
    for gold, pred in items:
        total[gold] = total.get(gold, 0) + 1
        if gold == pred:
            hits[gold] = hits.get(gold, 0) + 1
    return sum(hits.get(c, 0) / n for c, n in total.items()) / len(total)


_WRAPPED = "__icm_balanced_acc_bootstrap__"


def with_balanced_acc_bootstrap(stderr_for_metric: Callable) -> Callable:
    """lm-eval's ``stderr_for_metric``, plus its bootstrap stderr for :func:`balanced_accuracy`."""
    if getattr(stderr_for_metric, _WRAPPED, False):
        return stderr_for_metric

    @functools.wraps(stderr_for_metric)
    def wrapper(metric: Callable, bootstrap_iters: int) -> Callable | None:
        if metric is balanced_accuracy and bootstrap_iters > 0:
            from lm_eval.api.metrics import bootstrap_stderr

            return functools.partial(bootstrap_stderr, balanced_accuracy, iters=bootstrap_iters)
        return stderr_for_metric(metric, bootstrap_iters)

    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _install_bootstrap() -> None:
    try:
        import lm_eval.evaluator_utils as evaluator_utils

        evaluator_utils.stderr_for_metric = with_balanced_acc_bootstrap(evaluator_utils.stderr_for_metric)
    except (ImportError, AttributeError):  # another lm-eval layout: balanced_acc's stderr stays N/A
        pass


_install_bootstrap()
