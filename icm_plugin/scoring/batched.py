"""The batched scorer: whole prompts, many per forward. The fast choice on a GPU.

Every request is forwarded whole (about n^2 * L token-forwards for a leave-one-out sweep, like the reference),
but requests of similar length go through the model together, right-padded, up to ``token_budget`` tokens
per forward. Padding after a prompt's last token cannot change what its real tokens see under the causal
mask, and a prompt is one forward from BOS, so sliding-window layers see exactly what the reference shows
them. On a GPU a forward costs about the same for 50 tokens as for 50,000, so fewer, larger forwards beat
the prefix-sharing scorer's many small ones by several times despite the extra tokens (benchmarks/gpu_scaling.py);
on a CPU the model's arithmetic is the cost and the prefix-sharing scorer wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.hf import HFScorerBase


class BatchedScorer(HFScorerBase):
    """Reference log-probabilities, with requests packed into right-padded batches."""

    #: most tokens (rows x padded width) one forward takes
    token_budget: int = 65536

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        out = np.zeros((len(requests), len(self.label_words)))
        prompts = [self.tokens.full(r) for r in requests]
        for ids in prompts:
            self.check_length(len(ids))
        if not self.tokens.single_token_labels:  # multi-token label words: one prompt at a time
            for r, ids in enumerate(prompts):
                out[r] = self.label_scores(*self.forward(ids))
            return out
        rows = sorted(range(len(prompts)), key=lambda r: -len(prompts[r]))  # longest first: little padding
        room = self.memory_room()
        start = 0
        while start < len(rows):
            width = len(prompts[rows[start]])
            fit = room // max(1, self.forward_memory(width))  # rows whose forward fits the memory (estimate)
            size = max(1, min(len(rows) - start, self.token_budget // width, fit))
            chunk = rows[start:start + size]
            out[chunk] = self.single_token_scores(self.forward_right_padded([prompts[r] for r in chunk]))
            start += size
        return out
