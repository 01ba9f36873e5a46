"""How a task's examples look in Argilla: dataset settings for review and for flagged conflicts.

Fields follow the task's prompt template: each ``Caption: {{slot}}`` line becomes a TextField named after its
caption ("Question", "Claim", "Response 1", ...), and the template's last line ("I think this claim is")
titles the LabelQuestion whose labels are the task's labels (any number).

Record text is untrusted. Every field is ``use_markdown=False``, but Argilla 2.8's UI still puts such a field
into an iframe as HTML, with scripts on and the page's origin (checked: an ``<img onerror=...>`` in a record
changes the parent page), so ``plain_text`` escapes ``& < >`` in everything pushed: it shows as typed, runs never.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import argilla as rg

from icm_plugin.core.tasks import Task

QUESTION = "label"  # the LabelQuestion of a review dataset
CONFLICT_SUFFIX = "-conflicts"
OTHERS_QUESTION = "others_labels"  # the conflicts record's free-text box for the group's other examples
MAX_NAME_LENGTH = 200  # Argilla's limit on dataset names
_SLOT_LINE = re.compile(r"^(?P<caption>[^:{}]+):\s*\{\{\s*(?P<slot>\w+)\s*(\|[^}]*)?\}\}\s*$")

GUIDELINES = """\
These records were labelled by **Internal Coherence Maximization** (ICM, Wen et al. 2025): the language model
`{model}` labelled the whole pool by itself, choosing labels that make each example predictable from the others
and that break no logical rule of the task ({rule}). Nobody has checked them yet.

* The pre-selected answer on each record is ICM's **suggestion**; its **score** (also the `confidence`
  metadata) is the probability the model gives that label with the other examples and their labels as
  demonstrations (see *Reliability* below). Low scores are the first place to look.
* Metadata filters: `against_model` (`yes`: the model itself prefers another label, shown in `model_prefers`),
  `confidence`, `consistency_group` (examples that constrain each other), and `in_flagged_pair` (`yes` when the
  search found the example breaking a rule together with another one; the companion dataset `{conflicts}` shows
  those pairs side by side).
* **Submit** the label you believe is right, whether or not it agrees with the suggestion. Only submitted
  answers count: `icm pull` reads them (not drafts, not discarded records) and `icm label --clamp` re-runs ICM
  with them fixed, so a few corrections can improve the rest.
"""

WARNING = ("**WARNING: ICM flagged this run as unreliable: its labels are likely wrong in places. Review them "
           "before trusting them, starting with the records where `against_model` is `yes`.**")

#: what each reliability signal of ``icm_plugin.method.reliability`` means, and which side of its threshold flags a run
#: (``{against_model}``: the record metadata's name, see ``reliability_section``)
SIGNALS = {
    "agreement_zero_shot_rule": ("below", "the share of examples where ICM's label equals asking the model once "
                                 "(zero-shot, decoded under the task's rule); low: the search followed something "
                                 "the model does not say on its own"),
    "margin": ("below", "how many nats per example the model prefers these labels to the same labels rotated "
               "within each consistency group; near 0 it cannot tell them apart"),
    "against_model": ("above", "the share of examples whose label the model itself finds less likely than "
                      "another given the final demonstrations (the rule chose it): the `{against_model} = yes` "
                      "records"),
    "majority_share": ("above", "the share of the most common label; near 1 the labelling may have collapsed to "
                       "one class, the objective's best-known trap"),
}

CONFLICT_GUIDELINES = """\
Each record is a group of examples that broke the task's rule together at some point of the ICM search
(`{rule}`), with the labels ICM gave them before and after its fix. Say which label is right for each
example; submitted answers are read back by `icm pull --dataset {name}` like those of the main dataset.
"""

RULE_TEXT = {
    "exactly_one": "Exactly one of these examples should be True (they answer the same question).",
    "key:same_key_same_label": "These examples reach the same final answer, so they must get the same label.",
    "key:different_keys_not_both_true": "These examples reach different final answers, so they cannot both be True.",
    "none": "No rule.",
}


def plain_text(text: str) -> str:
    """Untrusted text as Argilla's UI should show it: HTML-escaped, so it displays literally and never runs."""
    return html.escape(text, quote=False)


@dataclass(frozen=True)
class PromptField:
    slot: str  # the template variable (an Example attribute or one of its ``fields``)
    name: str  # Argilla field name
    title: str

    def text(self, task: Task, ex) -> str | None:
        value = task.doc(ex).get(self.slot)
        return None if value is None else str(value)


def prompt_fields(task: Task) -> list[PromptField]:
    """The example's slots in the order and with the captions of the task's prompt."""
    out = []
    for line in task.template.splitlines():
        m = _SLOT_LINE.match(line)
        if m and m["slot"] in task.variables:
            caption = m["caption"].strip()
            name = re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_") or m["slot"]
            out.append(PromptField(m["slot"], name, caption))
    found = {f.slot for f in out}
    # a template whose variables are not on "Caption: {{slot}}" lines still gets one field per variable
    for slot in task.variables:
        if slot not in found:
            out.append(PromptField(slot, re.sub(r"[^a-z0-9]+", "_", slot.lower()).strip("_") or "text",
                                   slot.replace("_", " ").capitalize()))
    return out


def label_values(task: Task) -> tuple[str, ...]:
    """Argilla label values indexed by ICM label: the task's labels (two: "False", "True")."""
    return tuple(c.strip() for c in task.choices)


def question_title(task: Task) -> str:
    last = task.template.strip().splitlines()[-1].strip()
    return last if "{" not in last else "Label"


def claim_lines(task: Task) -> str:
    """Fixed lines of the prompt other than the slots and the last one, e.g. the comparison's claim."""
    lines = task.template.strip().splitlines()[:-1]
    return "\n".join(line for line in lines if "{" not in line)


def question_labels(task: Task) -> dict[str, str]:
    """The LabelQuestion's labels in the order the UI shows them: two labels True first, more in their order."""
    values = label_values(task)
    return {v: v for v in (reversed(values) if task.k == 2 else values)}


def reliability_section(reliability: dict | None, k: int, heading: str = "## Reliability", metadata_prefix: str = "",
                        sort_by: str = "`confidence`") -> str:
    """The guidelines' "Reliability" section: the run's gold-free verdict (report.json's ``reliability``, None
    for runs from before it), what the suggestion score means, and how to review the records the model itself
    disputes first. Text from the run folder is escaped like record text.

    The defaults fit the review dataset `icm push` creates. A dataset ICM did not create (`icm label
    --argilla-dataset`, ``icm_plugin.integrations.argilla.source``) passes its own ``heading``, the prefix of the
    record metadata's names (``"icm_"``: `icm_against_model`, `icm_model_prefers`) and what to sort by in place of
    the `confidence` metadata it does not have."""
    against, prefers = metadata_prefix + "against_model", metadata_prefix + "model_prefers"
    lines = [heading, ""]
    if reliability is None:
        lines += ["This run was written before ICM checked its own reliability: it has no verdict, and its records "
                  f"carry no `{against}` value. Label the pool again with a current `icm label` to get them.", ""]
    else:
        if reliability.get("flag"):
            lines += ["**Verdict: flagged.** A flag means \"review before trusting these labels\", not \"wrong\". "
                      "Reasons:", ""]
            lines += [f"* {plain_text(str(r))}" for r in reliability.get("reasons") or []] or ["* (none given)"]
        else:
            lines += ["**Verdict: not flagged** by the gold-free checks below (they cannot prove the labels right)."]
        lines += ["", "Signals (no gold labels needed; a run is flagged past the threshold in brackets):", ""]
        signals, thresholds = reliability.get("signals") or {}, reliability.get("thresholds") or {}
        for name, (side, meaning) in SIGNALS.items():
            value, limit = signals.get(name), thresholds.get(name)
            shown = f"{value:.2f}" if isinstance(value, (int, float)) else "not measured"
            bound = f" (flagged {side} {limit:g})" if isinstance(limit, (int, float)) else ""
            lines.append(f"* `{name}` = {shown}{bound}: {meaning.format(against_model=against)}.")
        count = reliability.get("records_against_model")
        if isinstance(count, int):
            lines += ["", f"{count} record(s) here have `{against} = yes`."]
        lines.append("")
    lines += [f"**The suggestion's score** is the probability the model gives ICM's label with the other examples and "
              f"their labels as demonstrations. Below 1/{k} ({1 / k:.2f}) the model itself prefers another label "
              f"and the task's consistency rule chose this one; `{against} = yes` marks every record where "
              f"the model finds another label more likely, and `{prefers}` names that label.",
              "",
              f"**Review those first**: in the dataset's filters choose *Metadata* > `{against}` > `yes` (then "
              f"sort by {sort_by}, lowest first). From Python: `ds.records(query=rg.Query(filter=rg.Filter("
              f"(\"metadata.{against}\", \"==\", \"yes\"))))`."]
    return "\n".join(lines) + "\n"


def review_guidelines(task: Task, model: str, rule: str, dataset_name: str, reliability: dict | None = None) -> str:
    """The review dataset's guidelines; a flagged run's open with ``WARNING``."""
    text = (GUIDELINES.format(model=model, rule=rule, conflicts=dataset_name + CONFLICT_SUFFIX) + "\n"
            + reliability_section(reliability, task.k))
    return (WARNING + "\n\n" + text) if reliability and reliability.get("flag") else text


def reliability_metadata(client: rg.Argilla, labels: Sequence[str], prefix: str = "",
                         titles: tuple[str, str] = ("Model prefers another label", "Label the model prefers"),
                         ) -> list[rg.MetadataType]:
    """The record metadata properties of the reliability check: ``{prefix}against_model`` (yes/no) and
    ``{prefix}model_prefers`` (one of ``labels``, the question's label values). The review dataset uses no
    prefix; a user's own dataset (``source.write_suggestions``) uses ``icm_`` and its own titles."""
    return [
        rg.TermsMetadataProperty(client=client, name=prefix + "against_model", title=titles[0], options=["yes", "no"]),
        rg.TermsMetadataProperty(client=client, name=prefix + "model_prefers", title=titles[1], options=list(labels)),
    ]


def review_settings(client: rg.Argilla, task: Task, model: str, rule: str, dataset_name: str,
                    reliability: dict | None = None) -> rg.Settings:
    """Settings of the dataset `icm push` writes: prompt fields, one LabelQuestion, filterable metadata.
    ``reliability``: report.json's verdict, shown in the guidelines (None: a run from before it)."""
    description = ("ICM's suggestion is pre-selected; its score is the probability the model gives that label with "
                   "the other labelled examples as demonstrations (see the guidelines' Reliability section).")
    if claim_lines(task):
        description = claim_lines(task) + "\n" + description
    metadata = [
        rg.TermsMetadataProperty(client=client, name="consistency_group", title="Consistency group"),
        rg.FloatMetadataProperty(client=client, name="confidence", title="ICM confidence", min=0.0, max=1.0),
        rg.TermsMetadataProperty(client=client, name="in_flagged_pair", title="In a flagged pair", options=["yes", "no"]),
        # added by the reliability check; a dataset pushed before it gets them on its next push (add_missing_metadata)
        *reliability_metadata(client, label_values(task)),
    ]
    if task.key is not None:
        metadata.append(rg.TermsMetadataProperty(client=client, name="consistency_key", title="Consistency key"))
    return rg.Settings(
        guidelines=review_guidelines(task, model, rule, dataset_name, reliability),
        fields=[rg.TextField(client=client, name=f.name, title=f.title, use_markdown=False) for f in prompt_fields(task)],
        questions=[rg.LabelQuestion(client=client, name=QUESTION, title=question_title(task), description=description,
                                    labels=question_labels(task))],
        metadata=metadata,
    )


def conflict_settings(client: rg.Argilla, task: Task, rule: str, dataset_name: str) -> rg.Settings:
    """Settings of NAME-conflicts: two examples side by side (more in `others`), one label question each."""
    labels = question_labels(task)
    return rg.Settings(
        guidelines=CONFLICT_GUIDELINES.format(rule=rule, name=dataset_name),
        fields=[
            rg.TextField(client=client, name="rule", title="Rule broken", use_markdown=False),
            rg.TextField(client=client, name="example_1", title="Example 1", use_markdown=False),
            rg.TextField(client=client, name="example_2", title="Example 2", use_markdown=False),
            rg.TextField(client=client, name="others", title="Other examples in the group", use_markdown=False, required=False),
        ],
        questions=[
            rg.LabelQuestion(client=client, name="label_1", title=f"Example 1: {question_title(task)}", labels=labels),
            rg.LabelQuestion(client=client, name="label_2", title=f"Example 2: {question_title(task)}", labels=labels),
            rg.TextQuestion(client=client, name=OTHERS_QUESTION, title="Other examples (one `id: label` per line)",
                            required=False, use_markdown=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(client=client, name="rule_broken", title="Rule broken"),
            rg.TermsMetadataProperty(client=client, name="resolution", title="ICM's last resolution",
                                     options=["repaired", "kept", "unresolved"]),
            rg.IntegerMetadataProperty(client=client, name="times_flagged", title="Times flagged"),
            rg.TermsMetadataProperty(client=client, name="example_1_id", title="Example 1 id"),
            rg.TermsMetadataProperty(client=client, name="example_2_id", title="Example 2 id"),
        ],
    )


def is_conflict_dataset(settings: rg.Settings) -> bool:
    names = {q.name for q in settings.questions}
    return {"label_1", "label_2"} <= names and {"example_1_id", "example_2_id"} <= {m.name for m in settings.metadata}


def schema_problems(existing: rg.Settings, wanted: rg.Settings) -> list[str]:
    """Why records built for ``wanted`` cannot go into a dataset with ``existing`` settings (empty: they can)."""
    problems = []
    have_fields = {f.name for f in existing.fields}
    for f in wanted.fields:
        if f.name not in have_fields:
            problems.append(f"no field {f.name!r}")
    extra = [f.name for f in existing.fields if f.required and f.name not in {w.name for w in wanted.fields}]
    if extra:
        problems.append(f"required fields this task does not fill: {', '.join(extra)}")
    have_q = {q.name: q for q in existing.questions}
    for q in wanted.questions:
        if q.name not in have_q:
            problems.append(f"no question {q.name!r}")
        elif getattr(q, "labels", None) is not None and set(getattr(have_q[q.name], "labels", None) or []) != set(q.labels):
            problems.append(f"question {q.name!r} has labels {sorted(have_q[q.name].labels or [])}, "
                            f"this task needs {sorted(q.labels)}")
    return problems + metadata_problems(existing, wanted)


def metadata_problems(existing: rg.Settings, wanted: rg.Settings) -> list[str]:
    """Why records with ``wanted``'s metadata cannot go into a dataset with ``existing`` settings: a property of
    the same name but another type, or terms that do not take ``wanted``'s options (empty: they can)."""
    problems = []
    # A metadata property the dataset lacks is no problem: Argilla 2.8 adds metadata properties to a published
    # dataset (fields and questions it refuses), and ``missing_metadata`` lists those the push adds first, e.g.
    # `against_model` for a dataset pushed before the reliability check.
    have_m = {m.name: m for m in existing.metadata}
    for m in wanted.metadata:
        if m.name not in have_m:
            continue
        if type(have_m[m.name]) is not type(m):
            problems.append(f"metadata {m.name!r} is a {type(have_m[m.name]).__name__}, needs a {type(m).__name__}")
        elif isinstance(m, rg.TermsMetadataProperty) and have_m[m.name].options and m.options and \
                not set(m.options) <= set(have_m[m.name].options):
            problems.append(f"metadata {m.name!r} takes {sorted(have_m[m.name].options)}, this task needs "
                            f"{sorted(m.options)}")
    return problems


def missing_metadata(existing: rg.Settings, wanted: rg.Settings) -> list[rg.MetadataType]:
    """The metadata properties of ``wanted`` that a dataset with ``existing`` settings lacks."""
    have = {m.name for m in existing.metadata}
    return [m for m in wanted.metadata if m.name not in have]
