"""Zero-shot figures of a model on a task's pool: per-claim labels and the per-group argmax.

    python benchmarks/zero_shot.py --task facts --limit 64 [--model gemma-3-270m]
"""

from __future__ import annotations

import argparse
import time

from icm_plugin.core.loaders import load_examples
from icm_plugin.core.metrics import accuracy, balanced_accuracy
from icm_plugin.core.tasks import get_task
from icm_plugin.method.baselines import group_argmax_labels, zero_shot_labels, zero_shot_scores
from icm_plugin.scoring.models import load_model
from icm_plugin.scoring.reference import ReferenceScorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", default="facts")
    ap.add_argument("--data", default=None)
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    task = get_task(args.task)
    examples = load_examples(args.data, task, args.limit)
    model, tok = load_model(args.model, dtype=args.dtype)
    t0 = time.perf_counter()
    scores = zero_shot_scores(ReferenceScorer(model, tok, task.label_words), task, examples)
    gold = [e.label for e in examples]
    print(f"{args.model} zero-shot on {task.name} (n={len(examples)}, {time.perf_counter() - t0:.1f}s)")
    print("| labels | accuracy | balanced accuracy | true rate |")
    print("|---|---|---|---|")
    for name, pred in (("per claim (p(True) > p(False))", zero_shot_labels(scores)),
                       ("per question argmax", group_argmax_labels(scores, examples))):
        print(f"| {name} | {accuracy(pred, gold):.3f} | {balanced_accuracy(pred, gold):.3f} | {sum(pred) / len(pred):.2f} |")


if __name__ == "__main__":
    main()
