"""Tasks are files: an lm-evaluation-harness multiple-choice task YAML, read by ICM and by ``lm_eval`` alike.

ICM reads the keys lm-eval defines: ``doc_to_text`` (a Jinja2 template, rendered exactly as lm-eval renders it),
``doc_to_choice`` (the labels, two or more), ``doc_to_target`` (gold, for the report only, never the search),
``target_delimiter`` (between a prompt and its label), ``fewshot_delimiter`` (between demonstrations) and the
dataset keys (``dataset_path``, ``dataset_name``, ``dataset_kwargs``, the splits) when no ``--data`` is given.
ICM's own settings live under ``metadata.icm`` (lm-eval's free-form key), all optional::

    metadata:
      icm:
        rule: exactly_one       # none (default), same_key, exactly_one, key, key_if_present
        group: consistency_id   # the record field (or Jinja template) naming a consistency group
        key: consistency_key    # ... naming a consistency key (same key => same label)
        true_label: "True"      # the label a two-label rule treats as "true" (exactly_one, key)
        fields: {choice: cot}   # template variable -> record field, where they differ
        target: label           # gold in the records, where doc_to_target says something else (ICM's copies)

The built-in tasks are such files (``tasks/icm_*.yaml``, shipped in the package); ``get_task`` takes a built-in
name or a path, and both go through ``load_task_file``. A label's continuation is ``target_delimiter + label``
and a demonstration is ``prompt + continuation``, as in lm-eval's few-shot contexts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icm_plugin.core.examples import Example
from icm_plugin.core.task_files import (
    FunctionTag,
    dump_yaml,
    is_template,
    read_yaml,
    render,
    template_variables,
)
from icm_plugin.errors import ICMError

RULES = ("none", "same_key", "exactly_one", "key", "key_if_present")
TWO_LABEL_RULES = ("exactly_one", "key", "key_if_present")  # they need one label that means "true"
EXAMPLE_SLOTS = ("question", "choice", "choice_2")  # template variables stored as Example attributes
ICM_KEYS = ("rule", "group", "key", "true_label", "fields", "name", "description", "target")
BUILTIN_PREFIX = "icm_"
DEMO_SEPARATOR = "\n\n"  # lm-eval's default fewshot_delimiter, and the built-in tasks'


@dataclass(frozen=True)
class Task:
    """How to read, prompt and constrain one kind of pool (built from a task file by ``load_task_file``).

    ``template``: the Jinja2 ``doc_to_text``. ``choices``: the label values (index = ICM label).
    ``fields``: template variable -> record field where they differ. ``group``/``key``: the record field or
    Jinja template giving ``consistency_id``/``consistency_key``. ``true_index``: the label a two-label rule
    treats as true (None for k > 2). ``target``: ``doc_to_target`` (gold, report only). ``config``: the whole
    file as read (includes resolved), for writing it back out.
    """

    name: str
    template: str
    choices: tuple[str, ...] = ("False", "True")
    rule: str = "none"
    target_delimiter: str = " "
    fewshot_delimiter: str = DEMO_SEPARATOR
    fields: dict[str, str] = field(default_factory=dict)
    group: str | None = "consistency_id"
    key: str | None = "consistency_key"
    true_index: int | None = 1
    target: str | int | None = "label"
    description: str = ""
    source: str = ""  # the file it came from
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label_words(self) -> tuple[str, ...]:
        """Each label's continuation after a prompt: ``target_delimiter + label`` (what the scorer scores)."""
        return tuple(self.target_delimiter + c for c in self.choices)

    @property
    def k(self) -> int:
        return len(self.choices)

    @functools.cached_property
    def variables(self) -> tuple[str, ...]:
        """The record fields the prompt reads (the template's free variables), in the order the prompt shows them."""
        names = template_variables(self.template, self.source, "doc_to_text")
        return tuple(sorted(names, key=lambda v: (self.template.find(v), v)))

    def doc(self, ex: Example) -> dict[str, Any]:
        """The values the template is rendered with."""
        out: dict[str, Any] = {"question": ex.question, "choice": ex.choice, "choice_2": ex.choice_2 or ""}
        out.update(ex.fields)
        return out

    def prompt(self, ex: Example) -> str:
        return render(self.template, self.doc(ex))

    def demonstration(self, ex: Example, label: int) -> str:
        return self.prompt(ex) + self.label_words[label]

    def rule_for(self, examples: list[Example]) -> str:
        """The rule name for this pool (``key_if_present`` is ``key`` only when keys are present)."""
        if self.rule == "key_if_present":
            return "key" if any(e.consistency_key is not None for e in examples) else "none"
        return self.rule

    def label_value(self, label: int) -> str:
        return self.choices[int(label)]


def builtin_dir() -> Path:
    """The folder of the built-in task files (the repository's ``tasks/``, shipped in the package)."""
    from icm_plugin.core.discovery import tasks_dir

    return tasks_dir()


def builtin_names() -> list[str]:
    """Names of the built-in tasks (``facts``, ``gsm8k``, ...): ``tasks/icm_NAME.yaml`` with a doc_to_text."""
    names = []
    for path in sorted(builtin_dir().glob(f"{BUILTIN_PREFIX}*.yaml")):
        if "doc_to_text" in read_yaml(path):
            names.append(path.stem[len(BUILTIN_PREFIX):])
    return names


def load_task_file(path: str | Path, name: str | None = None) -> Task:
    """A ``Task`` from an lm-eval task YAML. Raises ICMError naming the file and the key for a bad file."""
    path = Path(path)
    config = read_yaml(path)
    src = str(path)
    icm = (config.get("metadata") or {}).get("icm") or {}
    if not isinstance(icm, dict):
        raise ICMError(f"{src}: key 'metadata.icm' must be a mapping of ICM settings ({', '.join(ICM_KEYS)})")
    unknown = sorted(set(icm) - set(ICM_KEYS))
    if unknown:
        raise ICMError(f"{src}: key 'metadata.icm.{unknown[0]}' is not an ICM setting; the settings are "
                       f"{', '.join(ICM_KEYS)}")
    if config.get("output_type", "multiple_choice") != "multiple_choice":
        raise ICMError(f"{src}: key 'output_type' is {config['output_type']!r}; ICM labels multiple-choice "
                       "tasks (output_type: multiple_choice)")
    template = config.get("doc_to_text")
    if not isinstance(template, str) or not template or isinstance(template, FunctionTag):
        raise ICMError(f"{src}: key 'doc_to_text' must be a Jinja2 template string (e.g. \"Text: {{{{text}}}}\\n"
                       "Label:\"), got " + (repr(template) if template is None else type(template).__name__))
    variables = template_variables(template, src, "doc_to_text")
    choices = _choices(config.get("doc_to_choice"), src)
    target_delimiter = _text(config, "target_delimiter", " ", src)
    fewshot_delimiter = _text(config, "fewshot_delimiter", DEMO_SEPARATOR, src)
    rule = str(icm.get("rule", "none"))
    if rule not in RULES:
        raise ICMError(f"{src}: key 'metadata.icm.rule' is {rule!r}; choose one of {', '.join(RULES)}")
    true_index = _true_index(icm, choices, rule, src)
    fields = icm.get("fields") or {}
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise ICMError(f"{src}: key 'metadata.icm.fields' must map template variables to record fields")
    group, key = icm.get("group"), icm.get("key")
    for setting, value in (("group", group), ("key", key)):
        if value is not None and not isinstance(value, str):
            raise ICMError(f"{src}: key 'metadata.icm.{setting}' must be a record field name or a template")
        if isinstance(value, str) and is_template(value):
            template_variables(value, src, f"metadata.icm.{setting}")
    if rule != "none" and group is None:
        raise ICMError(f"{src}: rule {rule!r} compares labels inside consistency groups, but the file names no "
                       "group field: add metadata.icm.group (the record field that names a group), or rule: none")
    if rule in ("key", "same_key") and key is None:
        raise ICMError(f"{src}: rule {rule!r} needs a consistency key: add metadata.icm.key (the record field "
                       "whose equal values must share a label)")
    # a task file written by ICM scores lm-eval's docs by their label index and keeps the records' gold here
    target = icm.get("target", config.get("doc_to_target"))
    if isinstance(target, FunctionTag) or not (target is None or isinstance(target, str | int)):
        target = None  # a hook or a list: gold is not read (the report then has no accuracy)
    gold_field = target if isinstance(target, str) and not is_template(target) else None
    if gold_field is not None and gold_field in variables + tuple(fields.values()):
        raise ICMError(f"{src}: key 'doc_to_text' shows the gold field {gold_field!r} (doc_to_target) to the model; "
                       "gold is for the report only: take it out of the prompt")
    for setting, value in (("group", group), ("key", key)):
        if gold_field is not None and value == gold_field:
            raise ICMError(f"{src}: key 'metadata.icm.{setting}' is the gold field {gold_field!r} (doc_to_target); "
                           "no consistency rule may be built from gold labels")
    task_name = name or str(icm.get("name") or config.get("task") or path.stem)
    return Task(name=task_name, template=template, choices=choices, rule=rule, target_delimiter=target_delimiter,
                fewshot_delimiter=fewshot_delimiter, fields=dict(fields), group=group, key=key,
                true_index=true_index, target=target, description=str(icm.get("description", "")), source=src,
                config=config)


def _text(config: dict[str, Any], key: str, default: str, src: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str):
        raise ICMError(f"{src}: key {key!r} must be a string, got {type(value).__name__}")
    return value


def _choices(value: Any, src: str) -> tuple[str, ...]:
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list) or isinstance(value, str):
        raise ICMError(f"{src}: key 'doc_to_choice' must be the list of labels (e.g. [\"sports\", \"food\"]); "
                       f"ICM needs the same labels for every record, got {value!r}")
    choices = tuple(str(c) for c in value)
    if len(choices) < 2:
        raise ICMError(f"{src}: key 'doc_to_choice' has {len(choices)} label(s); ICM needs at least two")
    seen: set[str] = set()
    for c in choices:
        if c in seen:
            raise ICMError(f"{src}: key 'doc_to_choice' lists the label {c!r} twice; labels must be distinct")
        seen.add(c)
    return choices


def _true_index(icm: dict[str, Any], choices: tuple[str, ...], rule: str, src: str) -> int | None:
    if rule in TWO_LABEL_RULES and len(choices) != 2:
        raise ICMError(f"{src}: rule {rule!r} needs exactly two labels (one of them \"true\"), and doc_to_choice "
                       f"has {len(choices)}; use rule same_key or none for {len(choices)} labels")
    if "true_label" in icm:
        value = str(icm["true_label"])
        if value not in choices:
            raise ICMError(f"{src}: key 'metadata.icm.true_label' is {value!r}, which is not one of the labels "
                           f"{list(choices)}")
        if len(choices) != 2:
            raise ICMError(f"{src}: key 'metadata.icm.true_label' only applies to two labels; this task has "
                           f"{len(choices)}")
        return choices.index(value)
    if len(choices) != 2:
        return None
    lowered = [c.strip().lower() for c in choices]
    for word in ("true", "yes", "correct"):
        if word in lowered:
            return lowered.index(word)
    if rule in TWO_LABEL_RULES:
        raise ICMError(f"{src}: rule {rule!r} needs to know which label means true: add metadata.icm.true_label "
                       f"(one of {list(choices)})")
    return 1


def get_task(name: str | Path) -> Task:
    """A built-in task by name (``facts``, ``gsm8k``, ...) or a task file by path. Raises ICMError."""
    text = str(name)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise ICMError(f"{path}: task file not found")
        return load_task_file(path)
    return _builtin(text)


@functools.cache
def _builtin(name: str) -> Task:
    path = builtin_dir() / f"{BUILTIN_PREFIX}{name}.yaml"
    if not path.is_file() or name not in builtin_names():
        raise ICMError(f"unknown task {name!r}; choose one of: {', '.join(builtin_names())}, or pass a task file "
                       "(an lm-eval task YAML) by its path")
    return load_task_file(path, name=name)


# ---- writing task files ------------------------------------------------------------------------------------

TASK_FILE = "task.yaml"
HOOKS_FILE = "icm_hooks.py"
#: what a task file needs so stock lm_eval runs ICM's pool/test split, many-shot demonstrations and balanced_acc
LMEVAL_HOOKS: dict[str, Any] = {
    "custom_dataset": FunctionTag("icm_hooks.icm_dataset"),
    "test_split": "test",
    "fewshot_split": "pool",
    "output_type": "multiple_choice",
    "fewshot_config": {"sampler": FunctionTag("icm_hooks.DemonstrationSampler")},
    "process_results": FunctionTag("icm_hooks.process_results"),
    "metric_list": [
        {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
        {"metric": "balanced_acc", "aggregation": FunctionTag("icm_hooks.balanced_accuracy"), "higher_is_better": True},
    ],
}
#: keys of a task file that the lm-eval copy replaces (its data comes through ``icm_hooks.icm_dataset``)
_DATA_KEYS = ("dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split", "test_split",
              "fewshot_split", "doc_to_target", "process_docs")


def task_config(task: Task) -> dict[str, Any]:
    """The task as an lm-eval task file's mapping, with ICM's hooks: what ``write_task_file`` writes."""
    config = {k: v for k, v in task.config.items() if k not in _DATA_KEYS and k != "include"}
    config["task"] = task.name
    config["doc_to_text"] = task.template
    config["doc_to_choice"] = list(task.choices)
    config["doc_to_target"] = "label"  # the hook's docs carry gold as the label's index
    config["target_delimiter"] = task.target_delimiter
    config["fewshot_delimiter"] = task.fewshot_delimiter
    config.update(LMEVAL_HOOKS)
    icm = {"name": task.name, "rule": task.rule}
    for setting in ("group", "key"):
        if getattr(task, setting) is not None:
            icm[setting] = getattr(task, setting)
    if task.true_index is not None and task.k == 2:
        icm["true_label"] = task.choices[task.true_index]
    if task.fields:
        icm["fields"] = dict(task.fields)
    if task.description:
        icm["description"] = task.description
    if task.target is not None:
        icm["target"] = task.target
    metadata = dict(task.config.get("metadata") or {})
    metadata.setdefault("version", 1.0)
    metadata["icm"] = icm
    config["metadata"] = metadata
    return config


def write_task_file(task: Task, folder: Path) -> Path:
    """``folder/task.yaml`` (the task with ICM's lm-eval hooks) and ``folder/icm_hooks.py`` beside it: a file
    that ``icm label --task`` reads again and ``lm_eval --include_path folder --tasks NAME`` runs."""
    from icm_plugin.core.writers import writing

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TASK_FILE
    with writing(path) as tmp:
        tmp.write_text(dump_yaml(task_config(task)), encoding="utf-8")
    hooks = builtin_dir() / HOOKS_FILE
    with writing(folder / HOOKS_FILE) as tmp:
        tmp.write_text(hooks.read_text(encoding="utf-8"), encoding="utf-8")
    return path

