"""Scorers chosen by name, like lm-eval's ``--model NAME``, and ``ModelSpec``: which model scores, and how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import Scorer

SCORERS = {
    "prefix": "icm_plugin.scoring.prefix:PrefixSharingScorer",
    "levels": "icm_plugin.scoring.levels:LevelBatchedScorer",
    "reference": "icm_plugin.scoring.reference:ReferenceScorer",
    "batched": "icm_plugin.scoring.batched:BatchedScorer",
}


def make_scorer(name: str, model, tokenizer, label_words, separator: str = "\n\n") -> Scorer:
    """Build the transformers scorer called ``name`` (prefix: shared KV caches, the
    default and the fastest on a CPU; levels: the same trie, one forward per trie depth, for GPUs; batched: whole prompts packed many per forward, the fastest on a GPU;
    reference: one prompt per forward)."""
    if name not in SCORERS:
        raise ICMError(f"unknown scorer {name!r}; choose one of {sorted(SCORERS)}")
    module, cls = SCORERS[name].split(":")
    scorer_cls = getattr(__import__(module, fromlist=[cls]), cls)
    return scorer_cls(model, tokenizer, label_words=label_words, separator=separator)


@dataclass(frozen=True)
class ModelSpec:
    """The model that scores a job: a transformers model with a native scorer, or an lm-eval backend.

    model: an alias (``gemma-3-270m``, ``smollm2-135m``), a Hugging Face id or a local folder (``--model``).
    dtype: ``auto``, ``bfloat16``, ``float32`` or ``float16``. device: ``cpu``, ``cuda``, ... (None: cuda when
    available; with ``model_type``, lm-eval's default). scorer: the native scorer (``SCORERS``).
    model_type / model_args: an lm-eval model type (``hf``, ``vllm``, ``local-completions``, ...) and its
    ``k=v,k=v`` args, as ``lm_eval --model --model_args``; when set, ``model``, ``dtype`` and ``scorer`` are not
    used. memory_limit: bytes one forward may take (None: what the machine has free).
    """

    model: str = "gemma-3-270m"
    dtype: str = "auto"
    device: str | None = None
    scorer: str = "prefix"
    model_type: str | None = None
    model_args: str = ""
    memory_limit: int | None = None

    @property
    def display_name(self) -> str:
        """Short model name for run folders: the alias/id's last part, or the backend's ``pretrained``/``model``."""
        if self.model_type:
            from icm_plugin.scoring.lmeval_backend import backend_display_name

            return backend_display_name(self.model_type, self.model_args or "")
        from icm_plugin.scoring.models import model_display_name

        return model_display_name(self.model)

    def run_facts(self) -> dict[str, Any]:
        """What a checkpoint records of the model (``icm_plugin.method.checkpoint.RUN_FLAGS``): the unused side is None."""
        from icm_plugin.scoring.hardware import resolve_dtype

        backend = bool(self.model_type)
        return {"model": None if backend else self.model, "model_type": self.model_type or None,
                "model_args": (self.model_args or None) if backend else None,
                "scorer": None if backend else self.scorer,
                # resolved: ``auto`` is bfloat16 on one CPU and float32 on another, and the labels can differ
                "dtype": None if backend else resolve_dtype(self.dtype, self.device)}

    def build(self, label_words, separator: str = "\n\n") -> Scorer:
        """Load the model and return its scorer (ICMError when it cannot be loaded; see ``scorer_for``)."""
        return scorer_for(self, label_words, separator)


def scorer_for(spec: ModelSpec, label_words, separator: str = "\n\n") -> Scorer:
    """The scorer ``spec`` asks for: an lm-eval backend (``model_type``) or the native ``scorer``."""
    if spec.model_type:
        from icm_plugin.scoring.next_token import build_backend_scorer

        # a completions server: one next-token request per prompt (scoring=echo in model_args: loglikelihood)
        scorer: Scorer = build_backend_scorer(spec.model_type, spec.model_args or "", label_words, separator,
                                              device=spec.device)
    else:
        from icm_plugin.scoring.models import load_model

        model, tokenizer = load_model(spec.model, dtype=spec.dtype, device=spec.device)
        scorer = make_scorer(spec.scorer, model, tokenizer, label_words, separator)
    if spec.memory_limit is not None and hasattr(scorer, "memory_budget"):
        scorer.memory_budget = spec.memory_limit
    return scorer
