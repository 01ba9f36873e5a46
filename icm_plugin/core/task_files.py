"""Reading and writing task files: lm-eval's YAML (with its ``include`` and ``!function`` tags) and its Jinja2
templates, rendered exactly as lm-eval renders them. ``icm_plugin.core.tasks`` turns a file into a ``Task``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from icm_plugin.errors import ICMError

# ---- Jinja2, as lm-eval renders ----------------------------------------------------------------------------


@functools.cache
def _environment():
    # lm-eval's own environment (lm_eval.utils.env): StrictUndefined, trailing newlines kept, regex_replace
    try:
        from lm_eval.utils import env

        return env
    except ImportError:  # pragma: no cover - lm-eval is a dependency; keep the same settings without it
        import re

        from jinja2 import BaseLoader, Environment, StrictUndefined

        env = Environment(loader=BaseLoader, undefined=StrictUndefined, keep_trailing_newline=True)
        env.filters["regex_replace"] = lambda s, p, r, count=0: re.sub(p, r, s, count=count)
        return env


@functools.lru_cache(maxsize=256)
def _compiled(template: str):
    return _environment().from_string(template)


def render(template: str, doc: Mapping[str, Any]) -> str:
    """``template`` rendered over ``doc`` exactly as lm-eval's ``utils.apply_template`` does."""
    return _compiled(template).render(**doc)


@functools.lru_cache(maxsize=256)
def _variables(template: str) -> tuple[str, ...]:
    from jinja2 import meta

    return tuple(sorted(meta.find_undeclared_variables(_environment().parse(template))))


def template_variables(template: str, source: str, key: str) -> tuple[str, ...]:
    """The free variables of a Jinja2 template; ICMError naming the file and key when it does not parse."""
    from jinja2 import TemplateSyntaxError

    try:
        return _variables(template)
    except TemplateSyntaxError as err:
        raise ICMError(f"{source}: key {key!r}: not a valid Jinja2 template (line {err.lineno}: {err.message})") from None


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def field_or_template(spec: str, record: Mapping[str, Any]) -> Any:
    """lm-eval's convention for ``doc_to_target``: a record field by name, else a template over the record."""
    if not is_template(spec):
        return record.get(spec)
    return render(spec, record)


# ---- reading task files ------------------------------------------------------------------------------------


class FunctionTag(str):
    """A ``!function module.name`` value: kept as text (ICM never runs lm-eval's hooks)."""


def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: FunctionTag(loader.construct_scalar(node)))
    return Loader


def read_yaml(path: Path) -> dict[str, Any]:
    """A task YAML with its ``include`` resolved (relative to the file; the file's own keys win, as in
    lm-eval). ICMError naming the file when it does not parse or is not a mapping."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ICMError(f"{path}: task file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ICMError(f"{path}: cannot read the task file ({err})") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader with one extra tag
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ICMError(f"{path}: not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ICMError(f"{path}: a task file is a YAML mapping (task:, doc_to_text:, doc_to_choice:, ...), "
                       f"got {type(data).__name__}")
    include = data.pop("include", None)
    if include is None:
        return data
    merged: dict[str, Any] = {}
    for name in include if isinstance(include, list) else [include]:
        merged.update(read_yaml((path.parent / str(name)).resolve()))
    merged.update(data)
    return merged


def dump_yaml(config: dict[str, Any]) -> str:
    """YAML text of a task mapping, ``!function`` values written back as tags."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(FunctionTag, lambda d, v: d.represent_scalar("!function", str(v)))
    return yaml.dump(config, Dumper=Dumper, sort_keys=False, allow_unicode=True, width=1000)
