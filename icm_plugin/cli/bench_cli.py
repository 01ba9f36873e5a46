"""`icm train` and `icm bench`: a plugin of the ``icm`` CLI (``add_commands``; no options or hooks of ``icm label``).

The argparse layer over ``icm_plugin.apps.train.train_on_labels`` and ``icm_plugin.apps.bench.run_bench``. Light on purpose:
the ``icm`` CLI imports plugins on every call; torch, transformers and lm-eval load only when a command runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from icm_plugin.scoring.hardware import DTYPES


def add_commands(sub: argparse._SubParsersAction) -> None:
    add_train_parser(sub)
    add_bench_parser(sub)


def add_label_options(p: argparse.ArgumentParser) -> None:
    return None


def label_hooks(args: argparse.Namespace) -> list:
    return []


def train_command(args: argparse.Namespace) -> int:
    """`icm train`: read labels, fine-tune, save; prints the held-out figures and where the model is."""
    from icm_plugin.apps.train import TrainConfig, train_on_labels

    cfg = TrainConfig(epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, lora=args.lora,
                      lora_rank=args.lora_rank, seed=args.seed, heldout_fraction=args.heldout)
    result = train_on_labels(args.task, args.model, args.labels, args.out, cfg, data=args.data, split=args.split,
                             limit=args.limit, data_dir=args.data_dir, device=args.device, overwrite=args.overwrite)
    _print_result(result)
    return 0


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _print_result(r) -> None:
    print(f"icm: trained on {r.n_train} examples in {r.seconds:.0f}s; train loss {_fmt(r.train_loss_first)} -> "
          f"{_fmt(r.train_loss_last)}; held-out ({r.n_heldout}) loss {_fmt(r.heldout_loss_before)} -> "
          f"{_fmt(r.heldout_loss_after)}, accuracy vs labels {_fmt(r.heldout_accuracy)}, "
          f"vs gold {_fmt(r.heldout_gold_accuracy)}")
    print(f"icm: model: {r.out}  (AutoModelForCausalLM.from_pretrained, or "
          f"lm_eval --model hf --model_args pretrained={r.out})")


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune the model on labels (an icm label run, or gold) for the task's prompt")
    p.add_argument("--labels", required=True, help="RUN_DIR/labels.jsonl (or RUN_DIR) from `icm label`, or gold")
    p.add_argument("--task", default="facts", help="the task whose prompt and label words to train")
    p.add_argument("--data", default=None, help="the pool's data (default: the run folder's examples.jsonl, else "
                                                "the task's lm-eval data)")
    p.add_argument("--data-dir", default=None, help="folder of ICM-format files, as lm-eval's data_dir")
    p.add_argument("--split", choices=("pool", "test", "all"), default="pool",
                   help="train on the pool side of the lm-eval pool/test split (default), the test side, or all")
    p.add_argument("--limit", type=int, default=None, help="keep about N examples (whole consistency groups)")
    p.add_argument("--model", default="gemma-3-270m", help="Hugging Face id, local folder, or alias")
    p.add_argument("--out", required=True, help="folder for the fine-tuned model (save_pretrained + tokenizer)")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft), merged before saving")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 5e-5, or 5e-4 with --lora)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--heldout", type=float, default=0.2, help="fraction of consistency groups held out (loss)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.set_defaults(func=train_command)


def bench_command(args: argparse.Namespace) -> int:
    """`icm bench`: run, write bench.json/.md/.png, print the table."""
    from icm_plugin.apps.bench import RESULTS_FILE, BenchConfig, markdown_table, run_bench
    from icm_plugin.apps.train import TrainConfig
    from icm_plugin.scoring.models import model_display_name

    train = TrainConfig(epochs=args.epochs, learning_rate=args.lr, lora=args.lora, batch_size=args.batch_size)
    cfg = BenchConfig(task=args.task, model=args.model, data=args.data, data_dir=args.data_dir, limit=args.limit,
                      test_limit=args.test_limit, seeds=args.seeds, iterations=args.iterations, alpha=args.alpha,
                      bootstrap_rounds=args.bootstrap_rounds, shots=args.shots, finetune=not args.no_finetune,
                      train=train, dtype=args.dtype, device=args.device, keep_models=args.keep_models)
    out = Path(args.out) if args.out else Path("runs") / f"bench-{cfg.task}-{model_display_name(cfg.model)}"
    start = time.perf_counter()
    blob = run_bench(cfg, out, resume=args.resume, progress=not args.quiet)
    print()
    print(markdown_table(blob))
    print(f"icm bench: {time.perf_counter() - start:.0f}s; table: {out / 'bench.md'}  chart: {out / 'bench.png'}  "
          f"numbers: {out / RESULTS_FILE}")
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="zero-shot / random / bootstrap / ICM / golden labels: pool accuracy, many-shot "
                                     "and fine-tuned test accuracy, over seeds")
    p.add_argument("--task", default="facts", help="facts (packaged data), truthfulqa, gsm8k, alpaca (give their data)")
    p.add_argument("--data", default=None, help="ICM-format .json/.jsonl (both sides of the split are drawn from it)")
    p.add_argument("--data-dir", default=None, help="folder of ICM-format files, as the icm_* lm-eval tasks read")
    p.add_argument("--model", default="gemma-3-270m", help="Hugging Face id, local folder, or alias")
    p.add_argument("--limit", type=int, default=32, help="pool size (whole consistency groups)")
    p.add_argument("--test-limit", type=int, default=None, help="test examples (default: --limit)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    p.add_argument("--iterations", type=int, default=None, help="ICM search steps (default: ICMConfig.iterations_per_example x pool, or fewer at a fixed point)")
    p.add_argument("--alpha", type=float, default=None, help="ICM's weight of mutual predictability (paper: 50)")
    p.add_argument("--bootstrap-rounds", type=int, default=3)
    p.add_argument("--shots", type=int, default=None, help="demonstrations per many-shot test prompt (default: the pool)")
    p.add_argument("--no-finetune", action="store_true", help="skip fine-tuning on ICM and golden labels")
    p.add_argument("--epochs", type=float, default=2.0, help="fine-tuning epochs")
    p.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default 5e-5, 5e-4 with --lora)")
    p.add_argument("--batch-size", type=int, default=8, help="fine-tuning batch size")
    p.add_argument("--lora", action="store_true", help="fine-tune LoRA adapters (merged before evaluation)")
    p.add_argument("--keep-models", action="store_true", help="keep the fine-tuned models under OUT/seed*/")
    p.add_argument("--dtype", default="auto", choices=DTYPES)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--out", default=None, help="folder (default: runs/bench-<task>-<model>)")
    p.add_argument("--resume", action="store_true", help="continue a bench in --out (same options)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=bench_command)
