"""Scorers chosen by name, like lm-eval's ``--model NAME``."""

from __future__ import annotations

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import Scorer

SCORERS = {
    "prefix": "icm_plugin.scoring.prefix:PrefixSharingScorer",
    "reference": "icm_plugin.scoring.reference:ReferenceScorer",
}


def make_scorer(name: str, model, tokenizer, label_words, separator: str = "\n\n") -> Scorer:
    """Build the transformers scorer called ``name`` (prefix: shared KV caches; reference: one prompt each)."""
    if name not in SCORERS:
        raise ICMError(f"unknown scorer {name!r}; choose one of {sorted(SCORERS)}")
    module, cls = SCORERS[name].split(":")
    scorer_cls = getattr(__import__(module, fromlist=[cls]), cls)
    return scorer_cls(model, tokenizer, label_words=label_words, separator=separator)
