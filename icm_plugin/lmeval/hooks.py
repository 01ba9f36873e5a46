"""The ``!function`` hooks that the ``icm_*`` task YAMLs (top-level ``tasks/``) name; imported by lm-eval only.

``icm_dataset`` builds two splits: ``test`` (scored; target = gold) and ``pool`` (the demonstrations; label = the
chosen labels source). Each doc carries the labeler's own prompt (``Task.prompt``) and label words, so lm-eval
scores exactly what ``icm label`` scores, and a many-shot context is the labeler's: demonstrations
(``Task.demonstration``) joined by ``DEMO_SEPARATOR``, then the prompt.

``balanced_acc`` gets a standard error the way lm-eval gives one to its own corpus-level metrics (f1, mcc, bleu):
``lm_eval.api.metrics.bootstrap_stderr`` over ``--bootstrap_iters`` resamples of the test docs. lm-eval picks that
bootstrap from a fixed list of its own functions, so importing this module (lm-eval does when it loads the YAMLs)
adds ours to the choice: ``evaluator_utils.stderr_for_metric`` is wrapped once, and answers as before for every
other metric. The group's stderr then follows from the tasks' as lm-eval computes it for ``acc``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import datasets
from lm_eval.api.samplers import ContextSampler

from icm_plugin.errors import ICMError
from icm_plugin.examples import Example
from icm_plugin.lmeval.demonstrations import demonstration_labels, labels_for_task
from icm_plugin.lmeval.sources import LMEVAL_TASKS, load_task_examples
from icm_plugin.lmeval.split import split_pool
from icm_plugin.loaders import group_key
from icm_plugin.tasks import Task, get_task

POOL, TEST = "pool", "test"
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "prompt": datasets.Value("string"),
    "choices": datasets.Sequence(datasets.Value("string")),
    "label": datasets.Value("int64"),
    "consistency_id": datasets.Value("string"),
    "split": datasets.Value("string"),
})


def _docs(task: Task, examples: Sequence[Example], labels: dict[str, int], split: str) -> datasets.Dataset:
    rows = [
        {"id": e.id, "prompt": task.prompt(e), "choices": list(task.label_words), "label": labels[e.id],
         "consistency_id": group_key(e), "split": split}
        for e in examples if e.id in labels
    ]
    # column form: from_list cannot build an empty split (a pool with no labels) with a schema
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in FEATURES}, features=FEATURES)


def icm_dataset(task: str, data_dir: str | None = None, labels: Any = None, **_metadata: Any) -> datasets.DatasetDict:
    """``custom_dataset`` hook: the task's ``test`` and ``pool`` splits, built from lm-eval's ``--metadata``.

    ``data_dir``: folder of ICM-format files (else ``$ICM_DATA_DIR``, else the public/packaged data).
    ``labels``: ``RUN_DIR/labels.jsonl`` (or RUN_DIR), ``"gold"``, ``"gold:RUN_DIR"``, a dict naming every task of
    the run -> one of those, or None (zero-shot). Raises ICMError for a dict that leaves this task out.
    Other metadata (lm-eval adds the model args and the YAML's version) is ignored.
    """
    spec = get_task(task)
    source = labels_for_task(labels, task, LMEVAL_TASKS)  # before reading any data: a bad dict fails at once
    examples = load_task_examples(task, data_dir)
    pool, test = split_pool(examples)
    if not test:
        raise ICMError(f"icm_{task}: the held-out split is empty ({len(examples)} examples is too few to split)")
    unlabelled = [e.id for e in test if e.label is None]
    if unlabelled:
        raise ICMError(f"icm_{task}: {len(unlabelled)} test examples have no gold label (e.g. id {unlabelled[0]!r})")
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
    """Corpus-level mean per-class recall over the (gold, pred) pairs: ``icm_plugin.metrics.balanced_accuracy``'s
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
