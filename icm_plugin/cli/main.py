"""The `icm` command line: thin argparse layer over the package (lm-eval's `--model NAME --model_args` habits)."""

from __future__ import annotations

import argparse
import math
import sys

from icm_plugin.errors import ICMError
from icm_plugin.scoring.hardware import DTYPES

# the names of icm_plugin.method.consistency.RULES (a test keeps them equal; importing it here would slow `icm --help`)
RULE_CHOICES = ("none", "exactly_one", "key", "same_key")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _memory_size(text: str) -> int:
    from icm_plugin.scoring.memory import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 8, 8GiB, 512MiB)") from None


def _add_label(sub: argparse._SubParsersAction) -> None:
    from icm_plugin.method.icm_config import ICMConfig

    p = sub.add_parser("label", help="label a pool with ICM (no human labels)")
    p.add_argument("--task", default=None, help="a built-in task (`icm tasks` lists them) or a task file: an lm-eval "
                   "task YAML (doc_to_text, doc_to_choice, ...). Default: facts; with --argilla-dataset, the "
                   "dataset's own text fields and question")
    p.add_argument("--data", default=None, help="ICM .json/.jsonl file, a Hugging Face dataset name or local folder")
    p.add_argument("--model", default="gemma-3-270m", help="Hugging Face id, local folder, or alias gemma-3-270m / smollm2-135m")
    p.add_argument("--dtype", default="auto", choices=DTYPES)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available; with --model-type, as lm_eval --device: "
                        "lm-eval's default, cuda:0, which its hf model takes for the CPU without a GPU)")
    p.add_argument("--limit", type=_int_at_least(0), default=None, help="keep about N examples, whole consistency groups (embedded facts pool: 16 unless given; 0 = all)")
    p.add_argument("--seed", type=_int_at_least(0), default=0)
    p.add_argument("--iterations", type=_int_at_least(1), default=None, help=f"search steps (default: {ICMConfig.iterations_per_example} x pool size)")
    p.add_argument("--rule", default=None, choices=RULE_CHOICES, help="override the task's consistency rule")
    p.add_argument("--alpha", type=_positive_float, default=None, help="weight of mutual predictability, > 0 (paper: 50)")
    p.add_argument("--force-repair", action=argparse.BooleanOptionalAction, default=None,
                   help="repair every violation a step's new label introduces even when that lowers U (default: on)")
    p.add_argument("--context", default=None, choices=["group", "loo"],
                   help="an example's demonstrations: group = every labelled example outside its own consistency "
                        "group (default); loo = every other labelled example (the paper's leave-one-out)")
    p.add_argument("--scale", default=None, choices=["logodds", "logprob"],
                   help="P as the mean signed log-odds of the labels (logodds, default, the authors' code) or "
                        "their mean log-probability in nats (logprob)")
    p.add_argument("--orders", type=_int_at_least(1), default=None, metavar="N",
                   help="prompt orders whose log-probabilities are averaged (default 1; costs N x the token-forwards)")
    p.add_argument("--start", default=None, choices=["bootstrap", "seed"],
                   help="where the search starts: bootstrap = the model's own labels (zero-shot + rule, then up to "
                        "3 bootstrap rounds; default); seed = 8 random labels, the rest labelled by the steps (the paper)")
    p.add_argument("--paper", action="store_true",
                   help="the authors' setting (ICMConfig.paper(): leave-one-out, per-example proposals, mean over "
                        "labelled examples, T0 = 10 in units of U); other flags given still override")
    p.add_argument("--clamp", default=None, help="jsonl of {id, label}: labels the search must keep (human corrections)")
    p.add_argument("--compare-to", default=None, help="earlier run folder (same seed): report how many labels the clamps changed")
    p.add_argument("--scorer", default="prefix", choices=["prefix", "levels", "batched", "reference"],
                   help="prefix: shared KV caches (default; fastest on a CPU); levels: the same trie, one forward "
                        "per trie depth (for GPUs); batched: whole prompts, many per forward; reference: one "
                        "prompt per forward")
    p.add_argument("--model-type", default=None, help="score through an lm-eval model type instead: hf, vllm, local-completions, gguf, ... (as lm_eval --model)")
    p.add_argument("--model-args", default="", help="lm-eval model args for --model-type, k=v,k=v (as lm_eval --model_args); for a server: "
                        "num_concurrent=N prompts in flight per server, base_url=URL1|URL2 for several servers; completions servers "
                        "are scored by one next-token request per prompt (top_logprobs=K, default 20), scoring=echo for "
                        "lm-eval's prompt log-probabilities instead")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, help="label the pool in batches of about N examples, whole consistency groups (paper: 256), merged into one run folder")
    p.add_argument("--executor", default=None, choices=["sequential", "threads", "ray"],
                   help="where the batches of --batch-size run: one after another, in threads (the default where "
                        "the backend takes several searches at once), or as Ray tasks, each with its own scorer "
                        "(one GPU each where the cluster has GPUs; pip install \"icm-plugin[ray]\")")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --executor ray: join the Ray cluster at ADDR (head:6379, ray://head:10001 or auto) "
                        "instead of starting a local one")
    p.add_argument("--out", default=None, help="run folder (default: runs/<task>-<model>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--memory-limit", type=_memory_size, default=None, metavar="GiB",
                   help="most memory one forward may take (e.g. 8 or 8GiB; default: what the machine has free); "
                        "a prompt whose estimate exceeds it stops with an error instead of being killed")
    for hook in _plugins():
        hook.add_label_options(p)
    p.set_defaults(func=_cmd_label)


def icm_config(args: argparse.Namespace):
    """The ``ICMConfig`` of `icm label`'s flags: ``ICMConfig()`` (``ICMConfig.paper()`` with ``--paper``) with the
    flags given overriding. Raises ICMError for values it refuses."""
    from icm_plugin.method.icm_config import ICMConfig

    flags = {"seed": args.seed, "iterations": args.iterations, "alpha": args.alpha,
             "force_repair": getattr(args, "force_repair", None), "context": getattr(args, "context", None),
             "scale": getattr(args, "scale", None), "orders": getattr(args, "orders", None),
             "start": getattr(args, "start", None)}
    given = {k: v for k, v in flags.items() if v is not None}
    return ICMConfig.paper(**given) if getattr(args, "paper", False) else ICMConfig(**given)


def label_job(args: argparse.Namespace, plugins: list | None = None):
    """The ``LabelJob`` of a parsed `icm label` command line; each plugin turns its options into hooks."""
    from icm_plugin.method.job import LabelJob, ModelSpec

    model = ModelSpec(model=args.model, dtype=args.dtype, device=args.device, scorer=args.scorer,
                      model_type=args.model_type, model_args=args.model_args,
                      memory_limit=args.memory_limit)
    hooks = tuple(hook for plugin in (plugins if plugins is not None else _plugins())
                  for hook in plugin.label_hooks(args))
    executor, ray_address = getattr(args, "executor", None), getattr(args, "ray_address", None)
    if (executor or ray_address) and not args.batch_size:
        raise ICMError("--executor and --ray-address run the batches of --batch-size N; add --batch-size")
    return LabelJob(task=args.task, data=args.data, model=model, config=icm_config(args), limit=args.limit,
                    rule=args.rule, clamp=args.clamp, compare_to=args.compare_to, out=args.out, resume=args.resume,
                    batch_size=args.batch_size, executor=executor, ray_address=ray_address, hooks=hooks)


def _cmd_label(args: argparse.Namespace) -> int:
    from icm_plugin.apps.run import label

    label(label_job(args))
    return 0


def _add_labels_to_hf(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("labels-to-hf", help="turn a run folder into a datasets.Dataset saved with save_to_disk")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="folder for Dataset.save_to_disk")
    p.set_defaults(func=_cmd_labels_to_hf)


def _cmd_labels_to_hf(args: argparse.Namespace) -> int:
    from icm_plugin.core.writers import labels_to_dataset

    ds = labels_to_dataset(args.run_dir)
    ds.save_to_disk(args.out)
    print(f"saved {len(ds)} labelled examples to {args.out} (datasets.load_from_disk)")
    return 0


def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the built-in tasks, or show a task file's resolved settings and first prompt")
    p.add_argument("file", nargs="?", default=None, help="a task file (lm-eval task YAML) or a built-in task name")
    p.add_argument("--data", default=None, help="records to render the first prompt from (default: the task's own data)")
    p.set_defaults(func=_cmd_tasks)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from icm_plugin.core.tasks import builtin_names, get_task

    if args.file is None:
        for name in builtin_names():
            task = get_task(name)
            print(f"{name:<12} {task.k} labels {'/'.join(task.choices):<12} rule {task.rule:<15} {task.description}")
        print("\na task file (an lm-eval task YAML) works too: icm label --task FILE.yaml; icm tasks FILE.yaml shows it")
        return 0
    print(describe_task(get_task(args.file), args.data))
    return 0


def describe_task(task, data: str | None = None) -> str:
    """What ``icm tasks FILE`` prints: the resolved settings and the prompt of the first record (ICMError for
    data the task cannot read)."""
    from icm_plugin.core.loaders import load_examples
    from icm_plugin.core.tasks import TWO_LABEL_RULES

    lines = [f"task:              {task.name}", f"file:              {task.source}",
             f"labels ({task.k}):        {', '.join(repr(c) for c in task.choices)}",
             f"continuations:     {', '.join(repr(w) for w in task.label_words)}",
             f"rule:              {task.rule}"
             + (f" (true label: {task.choices[task.true_index]!r})" if task.rule in TWO_LABEL_RULES else ""),
             f"group field:       {task.group}", f"key field:         {task.key}",
             f"gold (report only): {task.target}", f"prompt reads:      {', '.join(task.variables)}"
             + (f" (fields: {task.fields})" if task.fields else ""),
             f"fewshot_delimiter: {task.fewshot_delimiter!r}"]
    try:
        examples = load_examples(data, task, limit=1)
    except ICMError as err:
        if data is not None:
            raise
        lines.append(f"first prompt:      (no data: {err})")
        return "\n".join(lines)
    first = examples[0]
    lines += ["", f"first record ({first.id}), prompt + each continuation scored:", task.prompt(first)
              + "{" + "|".join(task.label_words) + "}"]
    return "\n".join(lines)


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model-path", help="convert a model alias once and print its transformers folder")
    p.add_argument("model", nargs="?", default="gemma-3-270m")
    p.set_defaults(func=_cmd_model_path)


def _cmd_model_path(args: argparse.Namespace) -> int:
    from icm_plugin.scoring.models import resolve_model

    print(resolve_model(args.model))
    return 0


def _plugins() -> list:
    """Optional command groups living in sub-packages (Argilla, ...): each module has ``add_commands(sub)``,
    ``add_label_options(parser)`` and ``label_hooks(args)`` (its `icm label` options as the job's hooks)."""
    mods = []
    for name in ("icm_plugin.integrations.argilla.cli", "icm_plugin.integrations.lmeval.cli", "icm_plugin.cli.bench_cli"):
        try:
            mods.append(__import__(name, fromlist=["add_commands"]))
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("icm_plugin"):
                continue
            raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="icm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_label(sub)
    _add_labels_to_hf(sub)
    _add_tasks(sub)
    _add_models(sub)
    for plugin in _plugins():
        plugin.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ICMError as err:
        print(f"icm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("icm: interrupted; re-run with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
