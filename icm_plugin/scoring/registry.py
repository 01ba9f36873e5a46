"""Scorers chosen by name, like lm-eval's ``--model NAME``."""

from __future__ import annotations

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


def scorer_for_args(args, label_words, separator: str = "\n\n") -> Scorer:
    """The scorer `icm label` asked for: an lm-eval backend (``--model-type``) or the native ``--scorer``."""
    if getattr(args, "model_type", None):
        from icm_plugin.scoring.lmeval_backend import LMEvalScorer

        return LMEvalScorer.from_model_type(args.model_type, args.model_args or "", label_words, separator,
                                            device=getattr(args, "device", None))
    from icm_plugin.models import load_model

    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    return make_scorer(getattr(args, "scorer", "prefix"), model, tokenizer, label_words, separator)


def model_name_for_args(args) -> str:
    """Short model name for run folders: the ``--model`` alias/id, or the backend's ``pretrained``/``model``."""
    if getattr(args, "model_type", None):
        from icm_plugin.scoring.lmeval_backend import backend_display_name

        return backend_display_name(args.model_type, args.model_args or "")
    from icm_plugin.models import model_display_name

    return model_display_name(args.model)
