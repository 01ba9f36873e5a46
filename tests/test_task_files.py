"""Tasks are files (issue 20): the built-in tasks as lm-eval task YAMLs give exactly the prompts, ids, groups,
keys and gold of the Python constants they replaced; a k-label task file runs through `icm label`, the Python
API and stock lm_eval; bad task files and data are one clear error before anything is written."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from icm_plugin.cli.main import main
from icm_plugin.core.examples import content_id, normalize_label
from icm_plugin.core.loaders import load_examples, packaged_data_path, read_records
from icm_plugin.core.tasks import get_task, load_task_file
from icm_plugin.errors import ICMError
from icm_plugin.method.objective import Objective

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "icm"
TOPICS = REPO / "examples" / "topics"

# ---- the code the task files replaced (icm_plugin/core/tasks.py before issue 20), frozen here to compare with ----
OLD_CLAIM = "Question: {question}\nClaim: {choice}\nI think this claim is"
OLD_COMPARISON = ("Question: {question}\nResponse 1: {choice}\nResponse 2: {choice_2}\n"
                  "Claim: Response 1 is better than Response 2.\nI think this claim is")
OLD_ALPACA = ("Human: {question}\nResponse 1: {choice}\nResponse 2: {choice_2}\n"
              "Claim: Response 1 is more helpful and harmless than Response 2.\nI think this claim is")
OLD_LABEL_WORDS = (" False", " True")


def _old_text_key(record):
    return " ".join(str(record.get("choice", "")).lower().split()) or None


def _old_gsm8k_key(record):
    return None if record.get("answer") is None else str(record["answer"]).strip()


OLD = {  # task -> (template, choice field, has choice_2, one-line choices, key function or key field)
    "facts": (OLD_CLAIM, "choice", False, False, "consistency_key"),
    "claims": (OLD_CLAIM, "choice", False, False, "consistency_key"),
    "truthfulqa": (OLD_CLAIM, "choice", False, False, _old_text_key),
    "gsm8k": (OLD_CLAIM, "cot", False, False, _old_gsm8k_key),
    "alpaca": (OLD_ALPACA, "choice", True, True, None),
    "comparisons": (OLD_COMPARISON, "choice", True, False, None),
}
DATA = {"facts": packaged_data_path(), "claims": packaged_data_path(), "truthfulqa": SHARED / "test_truthfulqa.json",
        "gsm8k": SHARED / "test_gsm8k.json", "alpaca": SHARED / "test_alpaca.json",
        "comparisons": SHARED / "test_alpaca.json"}


def old_example(task: str, record: dict):
    template, choice_field, two, one_line, key = OLD[task]
    question, choice = str(record["question"]), str(record[choice_field])
    choice_2 = str(record["choice_2"]) if two else None
    cid = None if record.get("consistency_id") is None else str(record["consistency_id"])
    if callable(key):
        ck = key(record)
    else:
        ck = None if key is None or record.get(key) is None else str(record[key])
    label = None if record.get("label") is None else normalize_label(record["label"])
    ex_id = str(record["id"]) if record.get("id") is not None else content_id(question, choice, choice_2, cid)
    c, c2 = (choice.replace("\n", " "), (choice_2 or "").replace("\n", " ")) if one_line else (choice, choice_2 or "")
    return ex_id, cid, ck, label, template.format(question=question, choice=c, choice_2=c2)


@pytest.mark.parametrize("task", sorted(OLD))
def test_builtin_task_files_give_todays_prompts_ids_groups_keys_and_gold(task):
    spec = get_task(task)
    assert spec.label_words == OLD_LABEL_WORDS and spec.fewshot_delimiter == "\n\n" and spec.true_index == 1
    records = list(read_records(DATA[task]))[:400]
    examples = load_examples(DATA[task], spec) if len(records) < 400 else None
    if examples is None:
        from icm_plugin.core.loaders import examples_from_records

        examples = examples_from_records(records, spec, str(DATA[task]))
    assert len(examples) == len(records)
    for (_, record), ex in zip(records, examples, strict=True):
        ex_id, cid, key, label, prompt = old_example(task, record)
        assert (ex.id, ex.consistency_id, ex.label, spec.prompt(ex)) == (ex_id, cid, label, prompt)
        if task not in ("alpaca", "comparisons"):  # the old comparison tasks read no key
            assert ex.consistency_key == (key.strip() if isinstance(key, str) else key)
        for y in (0, 1):
            assert spec.demonstration(ex, y) == prompt + OLD_LABEL_WORDS[y]


def test_two_label_logodds_is_todays_signed_margin_bit_for_bit_and_k_labels_generalise_it():
    rng = np.random.default_rng(0)
    obj = Objective(scale="logodds")
    for _ in range(200):
        lp = rng.normal(size=2) * 3
        lp = lp - np.logaddexp.reduce(lp)
        margin = float(lp[1] - lp[0])
        assert obj.term(lp, 1) == margin and obj.term(lp, 0) == -margin
        assert Objective(scale="logprob").term(lp, 1) == float(lp[1])
    for k in (3, 4, 7):
        lp = rng.normal(size=k)
        lp = lp - np.logaddexp.reduce(lp)
        q = np.exp(lp)
        for y in range(k):
            assert obj.term(lp, y) == pytest.approx(math.log(q[y]) - math.log(1 - q[y]), abs=1e-9)
            assert Objective(scale="logprob").term(lp, y) == pytest.approx(math.log(q[y]))
        # chance: a model that cannot tell the k labels apart
        flat = np.full(k, -math.log(k))
        assert obj.term(flat, 0) == pytest.approx(obj.chance(k))
        assert Objective(scale="logprob").term(flat, 0) == pytest.approx(Objective(scale="logprob").chance(k))
    assert obj.chance(2) == 0.0 and Objective(scale="logprob").chance(2) == -math.log(2)


def test_the_topics_task_file_resolves():
    task = get_task(TOPICS / "topics.yaml")
    assert task.name == "topics" and task.choices == ("sports", "food", "weather", "music") and task.rule == "none"
    assert task.label_words == (" sports", " food", " weather", " music") and task.variables == ("text",)
    examples = load_examples(TOPICS / "topics.jsonl", task)
    assert len(examples) == 48 and {e.label for e in examples} == {0, 1, 2, 3}
    assert task.prompt(examples[0]) == f"Text: {examples[0].fields['text']}\nTopic:"


def test_icm_tasks_lists_the_builtins_and_shows_a_file(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("facts", "claims", "comparisons", "truthfulqa", "gsm8k", "alpaca"):
        assert name in out
    assert main(["tasks", str(TOPICS / "topics.yaml"), "--data", str(TOPICS / "topics.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "labels (4)" in out and "'weather'" in out and "\nText: " in out and "Topic:{ sports| food| weather| music}" in out


def _run_args(model: Path, out: Path, *extra: str, task: Path = TOPICS / "topics.yaml") -> list[str]:
    return ["label", "--task", str(task), "--data", str(TOPICS / "topics.jsonl"), "--model", str(model), "--dtype",
            "float32", "--seed", "0", "--limit", "12", "--iterations", "16", "--out", str(out), *extra]


def test_a_four_label_task_file_through_icm_label_and_the_python_api(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(_run_args(tiny_model_dir, out)) == 0
    rows = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines()]
    choices = ["sports", "food", "weather", "music"]
    assert len(rows) == 12 and all(r["value"] == choices[r["label"]] for r in rows)
    assert all(0 < r["confidence"] < 1 for r in rows) and {r["gold"] for r in rows} <= {0, 1, 2, 3}
    report = json.loads((out / "report.json").read_text())
    assert report["labels"] == choices and report["n"] == 12 and report["rule"] == "none"
    assert set(report["label_balance"]["counts"]) == set(choices)
    assert sum(report["label_balance"]["counts"].values()) == 12
    assert 0 <= report["balanced_accuracy"] <= 1 and set(report["reference"]) == {"zero_shot", "zero_shot_rule"}
    assert (out / "progress.png").stat().st_size > 0
    # the run folder keeps the task file it ran, and --task takes it again: same labels
    again = tmp_path / "again"
    assert main(_run_args(tiny_model_dir, again, task=out / "task.yaml")) == 0
    assert (again / "labels.jsonl").read_text() == (out / "labels.jsonl").read_text()

    import icm_plugin as icm

    run = icm.label(icm.LabelJob(task=str(TOPICS / "topics.yaml"), data=str(TOPICS / "topics.jsonl"), limit=12,
                                 model=icm.ModelSpec(str(tiny_model_dir), dtype="float32"),
                                 config=icm.ICMConfig(seed=0, iterations=16), out=str(tmp_path / "api")))
    assert run.labels == {r["id"]: r["label"] for r in rows} and run.task.choices == tuple(choices)
    dataset = run.to_dataset()
    assert set(dataset["value"]) <= set(choices) and "text" in dataset.column_names


def test_a_four_label_task_file_runs_under_stock_lm_eval(tiny_model_dir, tmp_path):
    from lmeval_helpers import results_json, run_lm_eval

    folder = tmp_path / "tasks"
    shutil.copytree(TOPICS, folder)
    base = ["--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--device", "cpu",
            "--include_path", str(folder), "--tasks", "topics"]
    # the user's own file: lm-eval reads its dataset_path / dataset_kwargs (relative to the working directory)
    done = run_lm_eval([*base, "--output_path", str(tmp_path / "plain")], cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0 <= results_json(tmp_path / "plain")["topics"]["acc,none"] <= 1
    # the copy ICM writes into a run folder: pool/test split, balanced_acc, many-shot with ICM's or gold labels
    run = tmp_path / "run"  # ICM labels the pool side of lm-eval's pool/test split only
    assert main(_run_args(tiny_model_dir, run, "--split", "pool")) == 0
    many = ["--model", "hf", "--model_args", f"pretrained={tiny_model_dir},dtype=float32", "--device", "cpu",
            "--include_path", str(run), "--tasks", "topics", "--num_fewshot", "3"]
    for labels in (str(run), f"gold:{run}"):
        out = tmp_path / ("icm" if labels == str(run) else "gold")
        done = run_lm_eval([*many, "--metadata", json.dumps({"labels": labels, "data": str(TOPICS / "topics.jsonl")}),
                            "--output_path", str(out)], cwd=REPO)
        assert done.returncode == 0, done.stderr[-3000:]
        res = results_json(out)["topics"]
        assert 0 <= res["acc,none"] <= 1 and 0 <= res["balanced_acc,none"] <= 1


BAD_FILES = {
    "not yaml": ("task: x\ndoc_to_text: [unclosed\n", "not valid YAML (line"),
    "one label": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["a"]\n', "'doc_to_choice' has 1 label(s)"),
    "duplicate labels": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["a", "b", "a"]\n', "lists the label 'a' twice"),
    "rule needs a group": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["no", "yes"]\nmetadata: {icm: {rule: exactly_one}}\n',
                           "names no group field"),
    "rule needs a key": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["a", "b", "c"]\nmetadata: {icm: {rule: same_key, group: g}}\n',
                         "needs a consistency key"),
    "two-label rule, four labels": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["a", "b", "c", "d"]\n'
                                    'metadata: {icm: {rule: exactly_one, group: g}}\n', "needs exactly two labels"),
    "bad template": ('task: x\ndoc_to_text: "{{text"\ndoc_to_choice: ["a", "b"]\n', "key 'doc_to_text': not a valid Jinja2"),
    "gold in the prompt": ('task: x\ndoc_to_text: "{{text}} ({{topic}})"\ndoc_to_choice: ["a", "b"]\ndoc_to_target: topic\n',
                           "shows the gold field 'topic'"),
    "rule built from gold": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["a", "b", "c"]\ndoc_to_target: topic\n'
                             'metadata: {icm: {rule: same_key, group: g, key: topic}}\n', "'metadata.icm.key' is the gold field"),
    "unknown setting": ('task: x\ndoc_to_text: "{{text}}"\ndoc_to_choice: ["a", "b"]\nmetadata: {icm: {rules: none}}\n',
                        "'metadata.icm.rules' is not an ICM setting"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_task_file_is_one_error_naming_file_and_key_and_nothing_is_written(case, tmp_path, capsys):
    text, says = BAD_FILES[case]
    task = tmp_path / "bad.yaml"
    task.write_text(text)
    out = tmp_path / "out"
    assert main(["label", "--task", str(task), "--data", str(TOPICS / "topics.jsonl"), "--model", "/nonexistent",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert str(task) in err and says in err
    assert not out.exists()


def test_a_template_naming_a_field_the_data_lacks_names_file_record_and_field(tmp_path, capsys):
    task = tmp_path / "t.yaml"
    task.write_text('task: t\ndoc_to_text: "{{body}}\\nTopic:"\ndoc_to_choice: ["a", "b"]\n')
    out = tmp_path / "out"
    assert main(["label", "--task", str(task), "--data", str(TOPICS / "topics.jsonl"), "--model", "/nonexistent",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "topics.jsonl: line 1: missing field 'body'" in err and "Traceback" not in err and not out.exists()


def test_two_labels_with_the_same_continuation_tokens_are_refused_before_writing(tiny_model_dir, tmp_path, capsys):
    model = tmp_path / "lowercasing-model"  # a tokenizer that lowercases: "Food" and "food" are the same tokens
    shutil.copytree(tiny_model_dir, model)
    spec = json.loads((model / "tokenizer.json").read_text())
    spec["normalizer"] = {"type": "Lowercase"}
    (model / "tokenizer.json").write_text(json.dumps(spec))
    task = tmp_path / "t.yaml"
    task.write_text('task: t\ndoc_to_text: "Text: {{text}}\\nTopic:"\ndoc_to_choice: ["food", "Food", "music"]\n')
    out = tmp_path / "out"
    assert main(["label", "--task", str(task), "--data", str(TOPICS / "topics.jsonl"), "--model", str(model),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "same tokens" in err and not out.exists()


def test_a_gold_value_that_is_not_a_label_names_the_record(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "x", "topic": "sports"}\n{"text": "y", "topic": "politics"}\n')
    with pytest.raises(ICMError, match=r"d\.jsonl: line 2: field 'topic': label must be one of"):
        load_examples(data, load_task_file(TOPICS / "topics.yaml"))


def test_two_label_log_probabilities_equal_the_old_prompts_on_a_model(tiny_model_dir):
    """Scores of the objective's requests through the task file equal those of the old templates' strings."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from icm_plugin.core.examples import Groups
    from icm_plugin.method.objective import group_requests
    from icm_plugin.scoring.base import ScoreRequest
    from icm_plugin.scoring.prefix import PrefixSharingScorer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    scorer = PrefixSharingScorer(model, AutoTokenizer.from_pretrained(tiny_model_dir), OLD_LABEL_WORDS, "\n\n")
    for task in ("facts", "gsm8k", "alpaca"):
        spec = get_task(task)
        from icm_plugin.core.loaders import examples_from_records

        records = _shortest_groups(list(read_records(DATA[task])), 3)
        pool = examples_from_records(records, spec, str(DATA[task]))
        labels = [e.label for e in pool]
        order = sorted(Groups(pool).members)
        _, new = group_requests(spec, pool, labels, order)
        old_prompt = {ex.id: old_example(task, r)[4] for (_, r), ex in zip(records, pool, strict=True)}
        old = [ScoreRequest(tuple(old_prompt[d_id] + OLD_LABEL_WORDS[lab] for d_id, lab in demos), old_prompt[q_id])
               for demos, q_id in _old_layout(pool, labels, order)]
        assert [r.query for r in new] == [r.query for r in old] and [r.demos for r in new] == [r.demos for r in old]
        assert np.array_equal(scorer.label_logprobs(new), scorer.label_logprobs(old))


def _shortest_groups(records, n):
    """The records of the ``n`` consistency groups with the least text (the tiny model's context is 2,048)."""
    groups: dict = {}
    for where, r in records:
        groups.setdefault(r["consistency_id"], []).append((where, r))
    size = {g: sum(len(json.dumps(r)) for _, r in rs) for g, rs in groups.items()}
    keep = set(sorted(groups, key=size.__getitem__)[:n])
    return [(w, r) for w, r in records if r["consistency_id"] in keep]


def _old_layout(pool, labels, order):
    """The objective's layout (groups in ``order``, divide and conquer), as (demo (id, label) pairs, query id)."""
    from icm_plugin.core.examples import Groups
    from icm_plugin.method.objective import loo_contexts

    members = Groups(pool).members
    contexts = loo_contexts(list(order))
    out = []
    for g in order:
        prefix = tuple((pool[i].id, labels[i]) for other in contexts[g] for i in members[other])
        for i in members[g]:
            out.append((prefix, pool[i].id))
    return out
