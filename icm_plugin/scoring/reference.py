"""The plain scorer: one full forward per request. The yardstick for tests and the benchmark."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.hf import HFScorerBase


class ReferenceScorer(HFScorerBase):
    """Forwards every prompt from scratch: about n^2 * L token-forwards for one leave-one-out sweep."""

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        out = np.zeros((len(requests), len(self.label_words)))
        for r, request in enumerate(requests):
            ids = self.tokens.full(request)
            self.check_length(len(ids))
            cache, last = self.forward(ids)
            out[r] = self.label_scores(cache, last)
        return out
