"""`icm train` on the tiny model: the loss falls, the folder reloads with plain from_pretrained and with the stock
lm_eval CLI, LoRA is merged away, and bad label files get errors that name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icm_plugin.apps.train import TrainConfig, encode_example, fine_tune, heldout_groups, training_labels
from icm_plugin.cli import bench_cli
from icm_plugin.cli import main as cli
from icm_plugin.core.loaders import limit_pool, load_examples
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.integrations.lmeval.split import split_pool

FACTS = get_task("facts")


def icm_main(argv: list[str]) -> int:
    """``icm ARGV`` with the train/bench plugin loaded (whether or not cli.py lists it yet)."""
    original = cli._plugins
    cli._plugins = lambda: [m for m in original() if m is not bench_cli] + [bench_cli]
    try:
        return cli.main(argv)
    finally:
        cli._plugins = original


@pytest.fixture(scope="module")
def pool_and_test():
    pool, test = split_pool(load_examples(None, FACTS))
    return limit_pool(pool, 24), test


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model fine-tuned through the CLI on 24 gold-labelled facts from the pool side."""
    out = tmp_path_factory.mktemp("trained") / "model"
    assert icm_main(["train", "--labels", "gold", "--task", "facts", "--limit", "24", "--model", str(tiny_model_dir),
                     "--out", str(out), "--epochs", "3", "--lr", "3e-3", "--batch-size", "4"]) == 0
    return out


def test_loss_is_only_on_the_label_token(tiny_model_dir, pool_and_test):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ex = pool_and_test[0][0]
    row = encode_example(tok, FACTS, ex, 1)
    scored = [t for t in row["labels"] if t != -100]
    assert scored == tok(" True", add_special_tokens=False)["input_ids"]
    assert row["input_ids"][: -len(scored)] == tok(FACTS.prompt(ex))["input_ids"]  # BOS + prompt, as lm-eval scores it


def test_training_loss_falls_and_the_report_says_so(trained):
    report = json.loads((trained / "icm_train.json").read_text())
    assert report["n_train"] > 0 and report["n_heldout"] > 0
    assert report["train_loss_last"] < report["train_loss_first"]
    assert report["heldout_loss_after"] < report["heldout_loss_before"]
    assert 0.0 <= report["heldout_accuracy"] <= 1.0


def test_saved_folder_reloads_with_plain_from_pretrained(trained, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(trained)
    tok = AutoTokenizer.from_pretrained(trained)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok(FACTS.prompt(load_examples(None, FACTS)[0]), return_tensors="pt")
    with torch.no_grad():
        assert not torch.allclose(model(**ids).logits, base(**ids).logits)  # trained weights were saved


def test_stock_lm_eval_cli_loads_the_folder(trained, tmp_path):
    from lmeval_helpers import results_table, run_lm_eval

    from icm_plugin.integrations.lmeval import tasks_dir

    proc = run_lm_eval(["--model", "hf", "--model_args", f"pretrained={trained}", "--include_path", str(tasks_dir()),
                        "--tasks", "icm_facts", "--limit", "4", "--batch_size", "4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 0.0 <= results_table(proc.stdout)[("icm_facts", "acc")] <= 1.0


def test_lora_is_merged_before_saving(tiny_model_dir, pool_and_test, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    pool, _ = pool_and_test
    items = [(e, int(e.label)) for e in pool[:8]]
    result = fine_tune(str(tiny_model_dir), FACTS, items, tmp_path / "lora",
                       TrainConfig(epochs=1, lora=True, batch_size=4), progress=False)
    assert not (tmp_path / "lora" / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "lora")
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert result.n_train + result.n_heldout == 8


def test_heldout_groups_are_whole_and_never_everything(pool_and_test):
    pool, _ = pool_and_test
    held = heldout_groups(pool, 0.2, seed=0)
    assert held and len(held) < len({e.consistency_id for e in pool})
    assert heldout_groups(pool[:1], 0.2, seed=0) == set()


# ---- label files ---------------------------------------------------------------------------------------------------


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_labels_file_and_run_folder_are_read(pool_and_test, tmp_path):
    pool, test = pool_and_test
    path = _write(tmp_path / "labels.jsonl", [json.dumps({"id": e.id, "label": "True"}) for e in pool[:3]])
    assert training_labels(str(path), pool, test) == {e.id: 1 for e in pool[:3]}
    assert training_labels(str(tmp_path), pool, test) == {e.id: 1 for e in pool[:3]}


@pytest.mark.parametrize(("line", "expected"), [
    ("{not json", "line 2"),
    ('{"label": 1}', "missing field 'id'"),
    ('{"id": "x"}', "missing field 'label'"),
    ('{"id": "x", "label": "maybe"}', "field 'label'"),
])
def test_bad_label_file_names_file_line_and_field(pool_and_test, tmp_path, line, expected):
    pool, test = pool_and_test
    path = _write(tmp_path / "labels.jsonl", [json.dumps({"id": pool[0].id, "label": 1}), line])
    with pytest.raises(ICMError, match=expected) as err:
        training_labels(str(path), pool, test)
    assert str(path) in str(err.value)


def test_ids_outside_the_pool_are_refused(pool_and_test, tmp_path):
    pool, test = pool_and_test
    path = _write(tmp_path / "labels.jsonl", [json.dumps({"id": "no-such-id", "label": 1})])
    with pytest.raises(ICMError, match="not in the pool.*no-such-id"):
        training_labels(str(path), pool, test)
    path = _write(tmp_path / "test.jsonl", [json.dumps({"id": test[0].id, "label": 1})])
    with pytest.raises(ICMError, match="held-out test split.*--split all"):
        training_labels(str(path), pool, test)


def test_missing_file_and_gold_without_gold(pool_and_test, tmp_path):
    pool, test = pool_and_test
    with pytest.raises(ICMError, match="not found"):
        training_labels(str(tmp_path / "nope.jsonl"), pool, test)
    with pytest.raises(ICMError, match="no gold label"):
        training_labels("gold", [e.without_gold() for e in pool], test)


def test_cli_reports_a_bad_file_without_traceback(tiny_model_dir, tmp_path, capsys):
    path = _write(tmp_path / "labels.jsonl", ['{"id": "x", "label": 7}'])
    code = icm_main(["train", "--labels", str(path), "--model", str(tiny_model_dir), "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err
    assert "line 1" in err and "field 'label'" in err and "Traceback" not in err
