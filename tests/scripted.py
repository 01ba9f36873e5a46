"""A scripted scorer for testing the search logic without a model (not a test file itself)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from icm_plugin.scoring.base import Scorer, ScoreRequest


class ScriptedScorer(Scorer):
    """log-odds(True) = strength * (+1 if the query's hidden truth is True else -1)
    + herd * (fraction of demonstrations labelled True - 0.5) + bias.

    ``truth`` maps a query prompt to its hidden label; ``herd`` > 0 imitates the many-shot pull towards
    the majority label that makes one-class labellings attractive.
    """

    def __init__(self, truth: dict[str, int], strength: float = 1.0, herd: float = 0.0, bias: float = 0.0,
                 label_words: tuple[str, str] = (" False", " True")):
        self.truth = truth
        self.strength = strength
        self.herd = herd
        self.bias = bias
        self.label_words = label_words
        self.token_forwards = 0
        self.calls = 0

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(requests), 2))
        for r, req in enumerate(requests):
            t = self.truth[req.query]
            frac = (np.mean([d.endswith(self.label_words[1]) for d in req.demos]) if req.demos else 0.5)
            z = self.strength * (1 if t else -1) + self.herd * (frac - 0.5) + self.bias
            out[r] = [-np.logaddexp(0, z), -np.logaddexp(0, -z)]
            self.token_forwards += 1 + len(req.demos)
        return out


class OrderSensitiveScorer(ScriptedScorer):
    """The scripted truth signal plus a term drawn from the exact sequence of demonstrations before the query
    and a pull towards "the first demonstration of the prompt is True": like a real model, any change in the
    order of the prompt changes the scores."""

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        out = super().label_logprobs(requests)
        for r, req in enumerate(requests):
            h = hashlib.sha256("\x1e".join((*req.demos, req.query)).encode()).digest()
            z = float(out[r, 1] - out[r, 0]) + (h[0] / 255 - 0.5) * 2.0
            z += 0.8 if req.demos and req.demos[0].endswith(" True") else 0.0
            out[r] = [-np.logaddexp(0, z), -np.logaddexp(0, -z)]
        return out
