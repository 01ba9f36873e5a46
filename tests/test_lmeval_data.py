"""Where the icm_* tasks read their examples, and which labels the demonstrations carry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from icm_plugin.errors import ICMError
from icm_plugin.integrations.lmeval import split_pool
from icm_plugin.integrations.lmeval.demonstrations import (
    demonstration_labels,
    labels_for_task,
    read_labels_file,
)
from icm_plugin.integrations.lmeval.sources import (
    DATA_DIR_ENV,
    LMEVAL_TASKS,
    alpaca_records,
    load_task_examples,
    truthfulqa_records,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "icm"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"reference data not found at {DATA}")

TQA_ROWS = [
    {"question": "What happens if you crack your knuckles?", "best_answer": "Nothing in particular",
     "correct_answers": ["Nothing in particular happens", "It does not cause arthritis"],
     "incorrect_answers": ["You will get arthritis", "It does not cause arthritis"], "type": "x", "category": "y",
     "source": "z"},
    {"question": "Is the Earth flat?", "best_answer": "No", "correct_answers": ["No, it is round"],
     "incorrect_answers": ["Yes, it is flat"], "type": "x", "category": "y", "source": "z"},
]
ALPACA_ROWS = [
    {"instruction": "Name a fruit.", "input": "", "output_1": "Apple.", "output_2": "Carrot.", "preference": 1,
     "raw_preference": 1.0},
    {"instruction": "Translate.", "input": "Bonjour", "output_1": "Goodbye", "output_2": "Hello", "preference": 2,
     "raw_preference": 2.0},
    {"instruction": "Tie.", "input": "", "output_1": "a", "output_2": "b", "preference": 0, "raw_preference": 0.0},
]


# ---- sources ----------------------------------------------------------------------------------------------


@needs_data
def test_data_dir_metadata_and_env_var_read_the_same_files(monkeypatch):
    by_arg = load_task_examples("truthfulqa", DATA)
    monkeypatch.setenv(DATA_DIR_ENV, str(DATA))
    by_env = load_task_examples("truthfulqa")
    assert [e.id for e in by_arg] == [e.id for e in by_env] and len(by_arg) == 1000


@needs_data
def test_mixed_label_types_are_normalised():
    labels = {e.label for t in ("gsm8k", "alpaca") for e in load_task_examples(t, DATA)}
    assert labels == {0, 1}


def test_facts_uses_the_packaged_claims(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with caplog.at_level("WARNING", logger="icm_plugin.integrations.lmeval.sources"):
        facts = load_task_examples("facts")
    assert len(facts) >= 100 and {e.label for e in facts} == {0, 1}
    assert not caplog.records  # no data folder given: the package is the default, nothing to say
    # a data folder without facts.jsonl still falls back to the package, and says so
    with caplog.at_level("WARNING", logger="icm_plugin.integrations.lmeval.sources"):
        assert [e.id for e in load_task_examples("facts", tmp_path)] == [e.id for e in facts]
    [record] = caplog.records
    assert f"{tmp_path} has no facts.jsonl" in record.getMessage() and "packaged" in record.getMessage()


def test_missing_data_dir_and_missing_file_name_the_fix(tmp_path):
    with pytest.raises(ICMError, match="no such folder"):
        load_task_examples("truthfulqa", tmp_path / "nope")
    with pytest.raises(ICMError, match="test_truthfulqa.json"):
        load_task_examples("truthfulqa", tmp_path)


def test_gsm8k_without_data_dir_says_to_pass_one(monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(ICMError, match="no public copy.*data_dir.*ICM_DATA_DIR"):
        load_task_examples("gsm8k")


def test_truthfulqa_conversion():
    records = [r for _, r in truthfulqa_records(TQA_ROWS)]
    # the answer listed as both correct and incorrect is dropped
    assert [(r["choice"], r["label"]) for r in records] == [
        ("Nothing in particular happens", 1), ("You will get arthritis", 0), ("No, it is round", 1),
        ("Yes, it is flat", 0)]
    assert records[0]["consistency_id"] == records[1]["consistency_id"] != records[2]["consistency_id"]


def test_alpaca_conversion_stores_each_pair_in_both_orders():
    records = [r for _, r in alpaca_records(ALPACA_ROWS)]
    assert len(records) == 4  # the tie is skipped
    first, swapped = records[0], records[1]
    assert (first["choice"], first["choice_2"], first["label"]) == ("Apple.", "Carrot.", 1)
    assert (swapped["choice"], swapped["choice_2"], swapped["label"]) == ("Carrot.", "Apple.", 0)
    assert records[2]["question"] == "Translate.\n\nBonjour" and records[2]["label"] == 0
    assert first["consistency_id"] == swapped["consistency_id"] != records[2]["consistency_id"]


def test_hub_path_loads_and_converts(monkeypatch):
    calls = []

    def fake_load_dataset(path, name=None, split=None, data_files=None):
        calls.append((path, name, split, data_files))
        return datasets.Dataset.from_list(TQA_ROWS if path == "truthfulqa/truthful_qa" else ALPACA_ROWS)

    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    tqa = load_task_examples("truthfulqa")
    alpaca = load_task_examples("alpaca")
    assert calls[0] == ("truthfulqa/truthful_qa", "generation", "validation", None)
    assert calls[1][0] == "json" and "tatsu-lab/alpaca_farm" in calls[1][3]
    assert len(tqa) == 4 and len(alpaca) == 4 and alpaca[0].choice_2 == "Carrot."


def test_offline_hub_failure_says_to_pass_data_dir():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    env.pop(DATA_DIR_ENV, None)
    code = ("from icm_plugin.integrations.lmeval.sources import load_task_examples\n"
            "from icm_plugin.errors import ICMError\n"
            "try:\n    load_task_examples('truthfulqa')\nexcept ICMError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "truthfulqa/truthful_qa" in out.stdout and '{"data_dir": "DIR"}' in out.stdout, out.stdout + out.stderr
    assert "ICM_DATA_DIR=DIR" in out.stdout


# ---- demonstrations' labels --------------------------------------------------------------------------------


def _facts_split():
    return split_pool(load_task_examples("facts"))


def _write_labels(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_no_labels_means_no_demonstrations():
    pool, test = _facts_split()
    assert demonstration_labels(None, pool, test) == {}


def test_gold_labels_cover_the_pool():
    pool, test = _facts_split()
    assert demonstration_labels("gold", pool, test) == {e.id: e.label for e in pool}


def test_labels_file_may_cover_part_of_the_pool(tmp_path):
    pool, test = _facts_split()
    run = tmp_path / "run"
    run.mkdir()
    _write_labels(run / "labels.jsonl", [{"id": e.id, "label": 1 - e.label, "confidence": 0.9} for e in pool[:10]])
    # the run folder or its labels.jsonl; the file's labels, not gold
    for source in (str(run), str(run / "labels.jsonl")):
        assert demonstration_labels(source, pool, test) == {e.id: 1 - e.label for e in pool[:10]}


def test_labels_file_that_labels_a_test_example_is_refused(tmp_path):
    pool, test = _facts_split()
    path = _write_labels(tmp_path / "labels.jsonl", [{"id": e.id, "label": 1} for e in pool[:5] + test[:1]])
    with pytest.raises(ICMError, match="held-out test split"):
        demonstration_labels(str(path), pool, test)


def test_labels_file_from_other_data_is_refused(tmp_path):
    pool, test = _facts_split()
    path = _write_labels(tmp_path / "labels.jsonl", [{"id": "elsewhere", "label": 1}])
    with pytest.raises(ICMError, match="none of its 1 ids"):
        demonstration_labels(str(path), pool, test)


def test_labels_file_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"id": "a", "label": 1}\n{"id": "b", "label": "maybe"}\n')
    with pytest.raises(ICMError, match=r"labels.jsonl: line 2: field 'label'"):
        read_labels_file(bad)
    with pytest.raises(ICMError, match="no such file"):
        read_labels_file(tmp_path / "missing.jsonl")


def test_labels_metadata_can_differ_per_task():
    given = {"icm_facts": "runs/facts", "truthfulqa": "gold"}
    assert labels_for_task(given, "facts") == "runs/facts"
    assert labels_for_task(given, "truthfulqa") == "gold"
    assert labels_for_task("gold", "alpaca") == "gold"
    # a task the dict leaves out has no demonstrations to give at the run's --num_fewshot: an error naming it
    with pytest.raises(ICMError, match="icm_alpaca: metadata 'labels' is a dict without an entry"):
        labels_for_task(given, "alpaca")


def test_a_labels_dict_that_leaves_tasks_out_names_every_one_of_them():
    given = {"icm_facts": "runs/facts"}
    with pytest.raises(ICMError) as err:
        labels_for_task(given, "truthfulqa", LMEVAL_TASKS)
    message = str(err.value)
    assert message.startswith("icm_truthfulqa:") and "icm_truthfulqa, icm_gsm8k, icm_alpaca" in message
    assert "it names icm_facts" in message and "--num_fewshot 0" in message
    with pytest.raises(ICMError, match="'icm_fact' is not a task"):
        labels_for_task({"icm_fact": "gold"}, "facts", LMEVAL_TASKS)


def test_gold_of_a_run_is_gold_on_exactly_the_examples_the_run_labelled(tmp_path):
    pool, test = _facts_split()
    run = tmp_path / "run"
    run.mkdir()
    _write_labels(run / "labels.jsonl", [{"id": e.id, "label": 1 - e.label, "confidence": 0.9} for e in pool[3:11]])
    like_for_like = demonstration_labels(f"gold:{run}", pool, test)
    assert like_for_like == {e.id: e.label for e in pool[3:11]}
    assert like_for_like.keys() == demonstration_labels(str(run), pool, test).keys()
    # the run's own checks hold for its gold twin too
    leaky = _write_labels(tmp_path / "leaky.jsonl", [{"id": e.id, "label": 1} for e in pool[:2] + test[:1]])
    with pytest.raises(ICMError, match="held-out test split"):
        demonstration_labels(f"gold:{leaky}", pool, test)
    with pytest.raises(ICMError, match="no such file"):
        demonstration_labels(f"gold:{tmp_path / 'nope'}", pool, test)
    with pytest.raises(ICMError, match="name the run folder"):
        demonstration_labels("gold:", pool, test)
