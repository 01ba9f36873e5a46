"""`icm train`: fine-tune a causal LM to say the labelled word (" True"/" False") after the task's prompt.

One training example = ``task.prompt(example)`` followed by ``task.label_words[label]``; the loss is on the label
word's token(s) only. Labels come from an ``icm label`` run (``labels.jsonl``) or from the pool's gold labels
(``"gold"``, the golden baseline). Training runs with transformers' ``Trainer`` (CPU or GPU, its progress bar),
optionally with LoRA adapters (peft) that are merged before saving, so the output folder loads with plain
``AutoModelForCausalLM.from_pretrained`` and with ``lm_eval --model hf --model_args pretrained=FOLDER``.
A few consistency groups are held out to report a held-out loss and accuracy.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from icm_plugin.core.examples import Example, Groups, group_key
from icm_plugin.core.tasks import Task
from icm_plugin.errors import ICMError

GOLD = "gold"
SPLITS = ("pool", "test", "all")
REPORT_FILE = "icm_train.json"


@dataclass
class TrainConfig:
    """Fine-tuning settings.

    epochs: passes over the training examples. learning_rate: None = 5e-5 (full) or 5e-4 (LoRA).
    batch_size: examples per optimizer step. heldout_fraction: share of consistency groups held out for the
    held-out loss (at least one group when there are two or more). lora: train rank-``lora_rank`` adapters on
    every linear layer instead of all weights (merged before saving). seed: the held-out draw and the Trainer.
    """

    epochs: float = 3.0
    learning_rate: float | None = None
    batch_size: int = 8
    heldout_fraction: float = 0.2
    lora: bool = False
    lora_rank: int = 8
    seed: int = 0
    weight_decay: float = 0.0

    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 5e-4 if self.lora else 5e-5


@dataclass
class TrainResult:
    """What ``fine_tune`` did: sizes, losses (nats per label token) before/after, held-out accuracy, time."""

    out: str
    n_train: int
    n_heldout: int
    heldout_loss_before: float | None
    heldout_loss_after: float | None
    train_loss_first: float | None
    train_loss_last: float | None
    heldout_accuracy: float | None  # vs the training labels of the held-out examples
    heldout_gold_accuracy: float | None  # vs gold, when the held-out examples have it
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)


# ---- which examples, with which labels ------------------------------------------------------------------------


def training_labels(source: str, pool: Sequence[Example], test: Sequence[Example] = ()) -> dict[str, int]:
    """``{id: label}`` to train on: the pool's gold labels (``"gold"``) or an ``icm label`` labels file (or its run
    folder).

    A labels file may cover part of the pool. Raises ICMError for a bad file (names file, line and field), for
    ids in the held-out ``test`` examples (the fix: label the pool side, or train on ``--split all``), for ids in
    neither, and for gold requested on examples without gold.
    """
    from icm_plugin.core.loaders import read_label_file

    if source == GOLD:
        missing = [e.id for e in pool if e.label is None]
        if missing:
            raise ICMError(f"--labels gold: {len(missing)} pool examples have no gold label (e.g. id {missing[0]!r}); "
                           "give a labels file from `icm label` instead")
        return {e.id: int(e.label) for e in pool}
    path = Path(source).expanduser()
    path = path / "labels.jsonl" if path.is_dir() else path
    given = read_label_file(path)
    if not given:
        raise ICMError(f"{path}: no labels in the file")
    in_pool, test_ids = {e.id for e in pool}, {e.id for e in test}
    in_test = [i for i in given if i in test_ids]
    if in_test:
        raise ICMError(
            f"{path}: {len(in_test)} labelled ids are in the held-out test split (e.g. {in_test[0]!r}), which "
            "lm-eval's icm_* tasks score: label the pool only (`icm label --split pool`), or pass --split all to "
            "train on them anyway (and do not evaluate on that task's test split)"
        )
    unknown = [i for i in given if i not in in_pool]
    if unknown:
        raise ICMError(
            f"{path}: {len(unknown)} of its {len(given)} ids are not in the pool of {len(pool)} examples "
            f"(e.g. {unknown[0]!r}): was it labelled on other data? pass the same --task/--data as `icm label`"
        )
    return given


def heldout_groups(examples: Sequence[Example], fraction: float, seed: int) -> set[str]:
    """Consistency groups held out from training: ``fraction`` of them (at least one when there are two)."""
    groups = sorted(Groups(examples).members)
    if len(groups) < 2 or fraction <= 0:
        return set()
    k = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    rng = np.random.default_rng(seed)
    return {groups[i] for i in rng.choice(len(groups), size=k, replace=False)}


# ---- tokenisation ------------------------------------------------------------------------------------------------


def encode_example(tokenizer, task: Task, ex: Example, label: int) -> dict[str, list[int]]:
    """Token ids of prompt + label word; ``labels`` is -100 (ignored) everywhere but the label word's tokens.

    The prompt is tokenised as lm-eval and the scorers do (with the tokenizer's BOS), the label word on its own.
    """
    prompt = list(tokenizer(task.prompt(ex))["input_ids"])
    target = list(tokenizer(task.label_words[label], add_special_tokens=False)["input_ids"])
    if not target:
        raise ICMError(f"the label word {task.label_words[label]!r} tokenizes to nothing with this tokenizer")
    ids = prompt + target
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [-100] * len(prompt) + target}


def _dataset(tokenizer, task: Task, items: Sequence[tuple[Example, int]]):
    import datasets

    rows = [encode_example(tokenizer, task, ex, y) for ex, y in items]
    return datasets.Dataset.from_list(rows)


# ---- training ----------------------------------------------------------------------------------------------------


def _attach_lora(model, rank: int):
    try:
        from peft import LoraConfig, get_peft_model
    except ModuleNotFoundError as err:
        raise ICMError("--lora needs the package peft: pip install peft (or train all weights without --lora)") from err
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear",
                        task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _label_accuracy(model, tokenizer, task: Task, items: Sequence[tuple[Example, int]]) -> tuple[float | None, float | None]:
    """Zero-shot accuracy of ``model`` on ``items`` against their training labels and against gold (if known)."""
    if not items:
        return None, None
    from icm_plugin.method.baselines import zero_shot_scores
    from icm_plugin.scoring.reference import ReferenceScorer

    model.eval()
    scores = zero_shot_scores(ReferenceScorer(model, tokenizer, task.label_words), task, [ex for ex, _ in items])
    pred = scores.argmax(axis=1)
    acc = float(np.mean(pred == np.asarray([y for _, y in items])))
    gold = [ex.label for ex, _ in items]
    gold_acc = None if any(g is None for g in gold) else float(np.mean(pred == np.asarray(gold)))
    return acc, gold_acc


def fine_tune(model_name: str, task: Task, items: Sequence[tuple[Example, int]], out: str | Path,
              config: TrainConfig | None = None, device: str | None = None, progress: bool = True) -> TrainResult:
    """Fine-tune ``model_name`` on (example, label) pairs and save it, with its tokenizer, to ``out``.

    Weights are trained in float32; LoRA adapters are merged into the weights before saving. Writes
    ``out/icm_train.json`` (settings, losses, held-out accuracy). Raises ICMError for an empty training set or a
    model that cannot be loaded.
    """
    import torch
    from transformers import DataCollatorForSeq2Seq, PrinterCallback, Trainer, TrainingArguments

    from icm_plugin.scoring.models import load_model

    cfg = config or TrainConfig()
    if not items:
        raise ICMError("nothing to train on: no labelled examples")
    out = Path(out)
    start = time.perf_counter()
    held = heldout_groups([ex for ex, _ in items], cfg.heldout_fraction, cfg.seed)
    train_items = [(ex, y) for ex, y in items if group_key(ex) not in held]
    held_items = [(ex, y) for ex, y in items if group_key(ex) in held]

    model, tokenizer = load_model(model_name, dtype="float32", device=device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out of attention and loss
    if cfg.lora:
        model = _attach_lora(model, cfg.lora_rank)
    train_ds = _dataset(tokenizer, task, train_items)
    held_ds = _dataset(tokenizer, task, held_items) if held_items else None
    use_cpu = next(model.parameters()).device.type == "cpu"
    with tempfile.TemporaryDirectory(prefix="icm-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=cfg.epochs,
            learning_rate=cfg.lr(),
            weight_decay=cfg.weight_decay,
            per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.batch_size,
            eval_strategy="epoch" if held_ds is not None else "no",
            save_strategy="no",
            logging_strategy="steps",
            logging_steps=1,
            report_to="none",
            seed=cfg.seed,
            data_seed=cfg.seed,
            use_cpu=use_cpu,
            bf16=not use_cpu and torch.cuda.is_bf16_supported(),
            disable_tqdm=not progress,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=held_ds,
                          data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
                          processing_class=tokenizer)
        if not progress:
            trainer.remove_callback(PrinterCallback)  # quiet: no per-step log lines either
        before = trainer.evaluate()["eval_loss"] if held_ds is not None else None
        trainer.train()
        after = trainer.evaluate()["eval_loss"] if held_ds is not None else None
        log = [dict(h) for h in trainer.state.log_history]
    model = trainer.model
    if cfg.lora:
        model = model.merge_and_unload()  # plain weights: from_pretrained and lm-eval need no peft
    acc, gold_acc = _label_accuracy(model, tokenizer, task, held_items)
    train_losses = [h["loss"] for h in log if "loss" in h and math.isfinite(h["loss"])]
    save_model(model, tokenizer, out)
    result = TrainResult(out=str(out), n_train=len(train_items), n_heldout=len(held_items),
                         heldout_loss_before=before, heldout_loss_after=after,
                         train_loss_first=train_losses[0] if train_losses else None,
                         train_loss_last=train_losses[-1] if train_losses else None,
                         heldout_accuracy=acc, heldout_gold_accuracy=gold_acc,
                         seconds=round(time.perf_counter() - start, 2), log=log)
    report = {"model": model_name, "task": task.name, "config": asdict(cfg) | {"learning_rate": cfg.lr()},
              **asdict(result)}
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return result


def save_model(model, tokenizer, out: Path) -> None:
    """save_pretrained the model (eval mode, cache on) and its tokenizer into ``out``, written then renamed."""
    model.eval()
    model.config.use_cache = True
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- the command ------------------------------------------------------------------------------------------------


def training_pool(task: Task, data: str | None, labels: str, split: str,
                  data_dir: str | None = None) -> tuple[list[Example], list[Example]]:
    """(examples training may use, held-out test examples) for ``icm train``.

    The examples come from ``data``; else from the run folder next to a labels file (its ``examples.jsonl``);
    else from the task's lm-eval data. ``split`` keeps the ``pool`` side of the lm-eval split (default), the
    ``test`` side, or ``all``.
    """
    from icm_plugin.core.writers import read_jsonl
    from icm_plugin.integrations.lmeval.pool import task_examples
    from icm_plugin.integrations.lmeval.split import split_pool

    run_examples = Path(labels).expanduser()
    run_examples = (run_examples if run_examples.is_dir() else run_examples.parent) / "examples.jsonl"
    if data is None and labels != GOLD and run_examples.is_file():
        examples = [Example.from_dict(r) for r in read_jsonl(run_examples)]
    else:
        examples = task_examples(task, data, data_dir)
    if split == "all":
        return examples, []
    pool, test = split_pool(examples)
    return (pool, test) if split == "pool" else (test, pool)


def train_on_labels(task_name: str, model: str, labels: str, out: str | Path, config: TrainConfig | None = None,
                    data: str | None = None, split: str = "pool", limit: int | None = None,
                    data_dir: str | None = None, device: str | None = None, overwrite: bool = False) -> TrainResult:
    """`icm train`: fine-tune ``model`` on ``labels`` (a run's labels.jsonl or folder, or ``"gold"``) for the task's
    prompt and save it in ``out``; ``split``/``data``/``limit`` choose the examples (see ``training_pool``).
    Prints what it trains. Raises ICMError (a non-empty ``out`` without ``overwrite``, bad labels)."""
    from icm_plugin.core.loaders import limit_pool
    from icm_plugin.core.tasks import get_task

    task = get_task(task_name)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ICMError(f"{out} is not empty; choose another --out or pass --overwrite")
    pool, other = training_pool(task, data, labels, split, data_dir)
    chosen = training_labels(labels, pool, other)
    labelled = [ex for ex in pool if ex.id in chosen]
    if limit:
        labelled = limit_pool(labelled, limit)
    items = [(ex, chosen[ex.id]) for ex in labelled]
    cfg = config or TrainConfig()
    source = "gold labels" if labels == GOLD else labels
    print(f"icm: fine-tuning {model} on {len(items)} {task.name} examples ({source}) "
          f"{'with LoRA ' if cfg.lora else ''}for {cfg.epochs:g} epoch(s), lr {cfg.lr():g} -> {out}")
    return fine_tune(model, task, items, out, cfg, device=device)
