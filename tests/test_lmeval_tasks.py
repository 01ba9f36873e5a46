"""The icm_* tasks as lm-eval builds them (in process): splits, prompts, many-shot contexts, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm_plugin.core.tasks import DEMO_SEPARATOR, get_task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.lmeval import split_pool, tasks_dir
from icm_plugin.integrations.lmeval.hooks import balanced_accuracy, process_results
from icm_plugin.integrations.lmeval.sources import LMEVAL_TASKS, load_task_examples

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "icm"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}")


def build(task: str, **metadata):
    """The lm-eval Task object for ``icm_<task>``, built by lm-eval's own TaskManager from our YAMLs."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tasks_dir()), include_defaults=False, metadata=metadata)
    loaded = tm.load([f"icm_{task}"])["tasks"] if hasattr(tm, "load") else None
    if loaded is None:  # lm-eval < 0.4.10
        from lm_eval.tasks import get_task_dict

        loaded = get_task_dict([f"icm_{task}"], tm)
    lm_task = loaded[f"icm_{task}"]
    lm_task.set_fewshot_seed(seed=1234)
    return lm_task


@pytest.fixture(scope="module")
def facts_split():
    return split_pool(load_task_examples("facts"))


def test_every_yaml_is_indexed():
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tasks_dir()), include_defaults=False)
    assert {"icm", "icm_truthfulqa", "icm_gsm8k", "icm_alpaca", "icm_facts"} <= set(tm.all_tasks)


@needs_data
@pytest.mark.parametrize("task", LMEVAL_TASKS)
def test_test_docs_are_the_held_out_split_with_the_labelers_prompt(task):
    lm_task = build(task, data_dir=str(DATA))
    spec = get_task(task)
    pool, test = split_pool(load_task_examples(task, DATA))
    docs = list(lm_task.eval_docs)
    assert [d["id"] for d in docs] == [e.id for e in test]
    by_id = {e.id: e for e in test}
    for doc in docs[:20]:
        ex = by_id[doc["id"]]
        assert lm_task.doc_to_text(doc) == spec.prompt(ex)
        # what lm-eval scores after the prompt: target_delimiter + each choice, the labeler's label words
        assert [lm_task.config.target_delimiter + c for c in lm_task.doc_to_choice(doc)] == list(spec.label_words)
        assert lm_task.doc_to_target(doc) == ex.label
        # zero-shot: the context is the prompt itself
        assert lm_task.fewshot_context(doc=doc, num_fewshot=0) == spec.prompt(ex)


def test_gold_many_shot_context_matches_the_labeler_and_excludes_the_test_group(facts_split):
    pool, test = facts_split
    spec = get_task("facts")
    lm_task = build("facts", labels="gold")
    pool_by_prompt = {spec.prompt(e): e for e in pool}
    test_groups = {e.consistency_id for e in test}
    for doc in list(lm_task.eval_docs)[:25]:
        context = lm_task.fewshot_context(doc=doc, num_fewshot=4)
        *demos, query = context.split(DEMO_SEPARATOR)
        assert query == lm_task.doc_to_text(doc) and len(demos) == 4  # the doc's prompt, as lm-eval renders it
        for demo in demos:
            prompt, word = demo.rsplit(" ", 1)
            ex = pool_by_prompt[prompt]  # every demonstration is a pool example...
            assert ex.consistency_id not in test_groups and ex.consistency_id != doc["consistency_id"]
            assert demo == spec.demonstration(ex, ex.label)  # ...in the labeler's format, with its gold label
            assert " " + word == spec.label_words[ex.label]
        assert context == DEMO_SEPARATOR.join([*demos, spec.prompt(next(e for e in test if e.id == doc["id"]))])


def test_labels_file_many_shot_uses_the_files_labels(tmp_path, facts_split):
    pool, _ = facts_split
    spec = get_task("facts")
    flipped = {e.id: 1 - e.label for e in pool[:12]}
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps({"id": i, "label": lab, "confidence": 0.5}) + "\n" for i, lab in flipped.items()))
    lm_task = build("facts", labels=str(path))
    assert {d["id"]: d["label"] for d in lm_task.fewshot_docs()} == flipped
    by_prompt = {spec.prompt(e): e for e in pool}
    doc = next(iter(lm_task.eval_docs))
    *demos, _ = lm_task.fewshot_context(doc=doc, num_fewshot=12).split(DEMO_SEPARATOR)
    for demo in demos:
        prompt, _word = demo.rsplit(" ", 1)
        ex = by_prompt[prompt]
        assert demo == spec.demonstration(ex, flipped[ex.id])
    with pytest.raises(ICMError, match="only 12 pool examples"):
        lm_task.fewshot_context(doc=doc, num_fewshot=13)


def test_gold_of_a_run_draws_the_same_demonstrations_as_the_run_with_gold_labels(tmp_path, facts_split):
    pool, _ = facts_split
    spec = get_task("facts")
    run = tmp_path / "run"
    run.mkdir()
    (run / "labels.jsonl").write_text("".join(json.dumps({"id": e.id, "label": 1 - e.label, "confidence": 0.5}) + "\n"
                                              for e in pool[:10]))
    by_prompt = {spec.prompt(e): e for e in pool}
    icm, gold = build("facts", labels=str(run)), build("facts", labels=f"gold:{run}")
    for doc in list(icm.eval_docs)[:5]:
        a = icm.fewshot_context(doc=doc, num_fewshot=6).split(DEMO_SEPARATOR)[:-1]
        b = gold.fewshot_context(doc=doc, num_fewshot=6).split(DEMO_SEPARATOR)[:-1]
        # the same examples in the same order (lm-eval's seeded draw); only the label words differ
        assert [d.rsplit(" ", 1)[0] for d in a] == [d.rsplit(" ", 1)[0] for d in b]
        for demo in b:
            ex = by_prompt[demo.rsplit(" ", 1)[0]]
            assert ex in pool[:10] and demo == spec.demonstration(ex, ex.label)


def test_many_shot_without_labels_says_how_to_give_them():
    lm_task = build("facts")
    doc = next(iter(lm_task.eval_docs))
    with pytest.raises(ICMError, match='"labels": "gold"'):
        lm_task.fewshot_context(doc=doc, num_fewshot=2)


def test_acc_and_balanced_accuracy():
    doc_true, doc_false = {"label": 1}, {"label": 0}
    # log-likelihoods of (" False", " True")
    items = [process_results(doc_true, [(-2.0, False), (-1.0, True)]),   # right
             process_results(doc_true, [(-0.5, True), (-1.0, False)]),   # wrong
             process_results(doc_true, [(-3.0, False), (-0.1, True)]),   # right
             process_results(doc_false, [(-0.2, True), (-1.0, False)])]  # right
    assert [i["acc"] for i in items] == [1.0, 0.0, 1.0, 1.0]
    # recall True 2/3, recall False 1/1
    assert balanced_accuracy([i["balanced_acc"] for i in items]) == pytest.approx((2 / 3 + 1) / 2)


def test_balanced_accuracy_is_the_labelers_definition():
    import random

    from icm_plugin.core.metrics import balanced_accuracy as labeler_balanced_accuracy

    rng = random.Random(0)
    for n in (1, 2, 7, 50):
        for p_true in (0.0, 0.3, 1.0):
            items = [(int(rng.random() < p_true), rng.randint(0, 1)) for _ in range(n)]
            gold, pred = zip(*items, strict=True)
            assert balanced_accuracy(items) == pytest.approx(labeler_balanced_accuracy(pred, gold))


def test_balanced_accuracy_gets_lm_evals_bootstrap_stderr(monkeypatch):
    import random

    import lm_eval.evaluator_utils as evaluator_utils
    from lm_eval.api.metrics import bootstrap_stderr, mean, mean_stderr

    monkeypatch.setenv("DISABLE_MULTIPROC", "1")  # lm-eval's sequential bootstrap: seeded per chunk, repeatable
    rng = random.Random(1)
    items = [(rng.randint(0, 1), rng.randint(0, 1)) for _ in range(60)]
    stderr_fn = evaluator_utils.stderr_for_metric(metric=balanced_accuracy, bootstrap_iters=2000)
    assert stderr_fn is not None
    value = stderr_fn(items)
    assert value == bootstrap_stderr(balanced_accuracy, items, iters=2000)
    assert 0.03 < value < 0.1  # about sqrt(0.25 / 60) = 0.065 for a coin against a coin
    # every other metric is answered by lm-eval's own rule, unchanged
    assert evaluator_utils.stderr_for_metric(metric=mean, bootstrap_iters=2000) is mean_stderr
    assert evaluator_utils.stderr_for_metric(metric=balanced_accuracy, bootstrap_iters=0) is None
