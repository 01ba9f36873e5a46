"""The pool/test split behind the icm_* lm-eval tasks: by consistency group, deterministic, order-free."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from icm_plugin.core.examples import Example, group_key
from icm_plugin.integrations.lmeval import is_test_group, split_pool
from icm_plugin.integrations.lmeval.sources import LMEVAL_TASKS, load_task_examples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "icm"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}")


def _examples(n_groups: int, per_group: int = 3) -> list[Example]:
    return [Example(id=f"g{g}-{i}", question=f"q{g}", choice=f"c{i}", consistency_id=f"g{g}")
            for g in range(n_groups) for i in range(per_group)]


def test_split_never_puts_a_group_on_both_sides():
    pool, test = split_pool(_examples(200))
    assert pool and test
    assert not {group_key(e) for e in pool} & {group_key(e) for e in test}
    assert len(pool) + len(test) == 600


def test_split_is_independent_of_order_and_of_other_groups():
    examples = _examples(100)
    shuffled = examples[:]
    random.Random(3).shuffle(shuffled)
    _, test_a = split_pool(examples)
    _, test_b = split_pool(shuffled)
    _, test_c = split_pool(examples[:30])  # fewer groups: the kept ones stay where they were
    assert {e.id for e in test_a} == {e.id for e in test_b}
    assert {e.id for e in test_c} == {e.id for e in test_a if e.id in {x.id for x in examples[:30]}}


def test_split_is_pinned():
    # a changed salt or hash would silently re-split every pool that a labels file was made on
    groups = ["capital-france", "0", "1", "2", "3", "4", "5", "6"]
    assert [is_test_group(g) for g in groups] == [False, True, False, False, False, True, False, False]
    assert sum(is_test_group(f"g{i}") for i in range(2000)) in range(900, 1100)


def test_examples_without_group_split_by_id():
    singles = [Example(id=f"x{i}", question="q", choice=f"c{i}") for i in range(100)]
    pool, test = split_pool(singles)
    assert pool and test and len(pool) + len(test) == 100


@needs_data
@pytest.mark.parametrize("task", LMEVAL_TASKS)
def test_real_task_splits_are_disjoint_and_both_sides_used(task):
    examples = load_task_examples(task, DATA)
    pool, test = split_pool(examples)
    assert not {group_key(e) for e in pool} & {group_key(e) for e in test}
    assert not {e.id for e in pool} & {e.id for e in test}
    assert 0.3 < len(test) / len(examples) < 0.7


def test_icm_label_split_pool_option_labels_only_the_pool():
    from argparse import Namespace

    from icm_plugin.core.tasks import get_task
    from icm_plugin.integrations.lmeval import cli

    facts = load_task_examples("facts")
    pool, test = split_pool(facts)
    chosen = cli.load_pool(Namespace(split="pool", data=None, limit=10), get_task("facts"))
    assert 10 <= len(chosen) <= 12 and {e.id for e in chosen} <= {e.id for e in pool}
    assert cli.load_pool(Namespace(split=None, data=None, limit=None), get_task("facts")) is None


@needs_data
def test_pool_file_round_trips_through_the_loader(tmp_path):
    from icm_plugin.core.loaders import load_examples
    from icm_plugin.core.tasks import get_task
    from icm_plugin.integrations.lmeval.cli import main

    out = tmp_path / "pool.jsonl"
    assert main(["pool", "--task", "gsm8k", "--data-dir", str(DATA), "--out", str(out)]) == 0
    written = load_examples(out, get_task("gsm8k"))  # the task's own field names (cot, answer) survive
    pool, _ = split_pool(load_task_examples("gsm8k", DATA))
    assert [(e.id, e.choice, e.consistency_key, e.label) for e in written] == \
        [(e.id, e.choice, e.consistency_key, e.label) for e in pool]


def test_icm_label_split_test_warns_before_labelling(tmp_path, capsys):
    from icm_plugin.cli.main import main

    # a model that cannot load: the run stops before any labelling, and the warning is already out
    assert main(["label", "--task", "facts", "--split", "test", "--model", str(tmp_path / "no-model"), "--limit", "4",
                 "--out", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    warning = next(n for n, line in enumerate(lines) if "--split test" in line)
    assert lines[warning].startswith("icm: warning:") and "lm-eval will refuse" in lines[warning]
    assert "--split pool" in lines[warning] and lines[-1].startswith("icm: error:") and warning < len(lines) - 1
    assert not (tmp_path / "run" / "labels.jsonl").exists()


def test_icm_label_split_pool_does_not_warn(capsys):
    from argparse import Namespace

    from icm_plugin.core.tasks import get_task
    from icm_plugin.integrations.lmeval import cli

    cli.load_pool(Namespace(split="pool", data=None, limit=4), get_task("facts"))
    assert "warning" not in capsys.readouterr().err
