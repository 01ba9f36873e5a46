"""Built-in tasks. A task = prompt template + consistency rule + field mapping from the raw records.

The prompts follow the paper: a claim prompt ends in "I think this claim is" and the label is the next
word, " True" or " False"; demonstrations are the same prompt with the label word appended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from icm_plugin.examples import Example

CLAIM_TEMPLATE = "Question: {question}\nClaim: {choice}\nI think this claim is"
COMPARISON_TEMPLATE = (
    "Question: {question}\nResponse 1: {choice}\nResponse 2: {choice_2}\n"
    "Claim: Response 1 is better than Response 2.\nI think this claim is"
)
ALPACA_TEMPLATE = (
    "Human: {question}\nResponse 1: {choice}\nResponse 2: {choice_2}\n"
    "Claim: Response 1 is more helpful and harmless than Response 2.\nI think this claim is"
)
LABEL_WORDS = (" False", " True")  # index = label
DEMO_SEPARATOR = "\n\n"


def _one_line(text: str) -> str:
    # the paper's Alpaca prompt strips newlines inside responses so each response stays one field
    return text.replace("\n", " ")


@dataclass(frozen=True)
class Task:
    """How to read, prompt and constrain one kind of pool.

    ``fields`` maps Example fields to record keys; ``key_from`` derives ``consistency_key`` from the
    record when the task defines one (never from a gold or reference field).
    """

    name: str
    template: str
    rule: str
    fields: dict[str, str]
    description: str
    key_from: Callable[[dict[str, Any]], str | None] | None = None
    required: tuple[str, ...] = ("question", "choice")
    one_line_choices: bool = False
    label_words: tuple[str, str] = LABEL_WORDS
    extra_fields: tuple[str, ...] = field(default=())

    def prompt(self, ex: Example) -> str:
        choice, choice_2 = ex.choice, ex.choice_2 or ""
        if self.one_line_choices:
            choice, choice_2 = _one_line(choice), _one_line(choice_2)
        return self.template.format(question=ex.question, choice=choice, choice_2=choice_2)

    def demonstration(self, ex: Example, label: int) -> str:
        return self.prompt(ex) + self.label_words[label]

    def rule_for(self, examples: list[Example]) -> str:
        """The rule name for this pool (``claims`` uses the key rule only when keys are present)."""
        if self.rule == "key_if_present":
            return "key" if any(e.consistency_key is not None for e in examples) else "none"
        return self.rule


def _gsm8k_key(record: dict[str, Any]) -> str | None:
    # the candidate solution's own final answer, never ref_answer
    answer = record.get("answer")
    return None if answer is None else str(answer).strip()


def _text_key(record: dict[str, Any]) -> str | None:
    return " ".join(str(record.get("choice", "")).lower().split()) or None


TASKS: dict[str, Task] = {
    "claims": Task(
        name="claims",
        template=CLAIM_TEMPLATE,
        rule="key_if_present",
        fields={"question": "question", "choice": "choice", "consistency_id": "consistency_id",
                "consistency_key": "consistency_key"},
        description="Generic True/False claims about a question; key rule when records carry consistency_key.",
    ),
    "comparisons": Task(
        name="comparisons",
        template=COMPARISON_TEMPLATE,
        rule="exactly_one",
        fields={"question": "question", "choice": "choice", "choice_2": "choice_2",
                "consistency_id": "consistency_id"},
        required=("question", "choice", "choice_2"),
        description="Generic pairwise comparisons stored in both orders; exactly one order holds.",
    ),
    "truthfulqa": Task(
        name="truthfulqa",
        template=CLAIM_TEMPLATE,
        rule="same_key",
        fields={"question": "question", "choice": "choice", "consistency_id": "consistency_id"},
        key_from=_text_key,
        description=(
            "TruthfulQA claims. Only gold-free rule: identical claims to one question share a label. "
            "(The authors' rule was built from the gold labels; we do not use it.)"
        ),
    ),
    "gsm8k": Task(
        name="gsm8k",
        template=CLAIM_TEMPLATE,
        rule="key",
        fields={"question": "question", "choice": "cot", "consistency_id": "consistency_id"},
        key_from=_gsm8k_key,
        description="GSM8K verification: is this solution correct? Key = the solution's own final answer.",
    ),
    "alpaca": Task(
        name="alpaca",
        template=ALPACA_TEMPLATE,
        rule="exactly_one",
        fields={"question": "question", "choice": "choice", "choice_2": "choice_2",
                "consistency_id": "consistency_id"},
        required=("question", "choice", "choice_2"),
        one_line_choices=True,
        description="Alpaca: is response 1 more helpful and harmless than response 2? Both orders; exactly one holds.",
    ),
    "facts": Task(
        name="facts",
        template=CLAIM_TEMPLATE,
        rule="exactly_one",
        fields={"question": "question", "choice": "choice", "consistency_id": "consistency_id",
                "consistency_key": "consistency_key"},
        description="Short factual claims written for this package; exactly one candidate per question is True.",
    ),
}


def get_task(name: str) -> Task:
    from icm_plugin.errors import ICMError

    if name not in TASKS:
        raise ICMError(f"unknown task {name!r}; choose one of: {', '.join(sorted(TASKS))}")
    return TASKS[name]
