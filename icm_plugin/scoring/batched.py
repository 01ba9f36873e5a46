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
import torch

from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.hf import HFScorerBase


class BatchedScorer(HFScorerBase):
    """Reference log-probabilities, with requests packed into right-padded batches."""

    #: most tokens (rows x padded width) one forward takes
    token_budget: int = 65536
    forwards: int = 0
    pad_forwards: int = 0

    @torch.inference_mode()
    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        out = np.zeros((len(requests), len(self.label_words)))
        prompts = [self.tokens.full(r) for r in requests]
        for ids in prompts:
            self.check_length(len(ids))
        if not self.tokens.single_token_labels:  # multi-token label words: one prompt at a time
            for r, ids in enumerate(prompts):
                cache, last = self.forward(ids)
                out[r] = self.label_scores(cache, last)
            return out
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rows = sorted(range(len(prompts)), key=lambda r: -len(prompts[r]))
        start = 0
        while start < len(rows):
            width = len(prompts[rows[start]])
            size = max(1, min(len(rows) - start, self.token_budget // max(width, 1)))
            chunk = rows[start:start + size]
            ids = torch.tensor([prompts[r] + [pad] * (width - len(prompts[r])) for r in chunk],
                               dtype=torch.long, device=self.device)
            hidden = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
            last = torch.stack([hidden[j, len(prompts[r]) - 1] for j, r in enumerate(chunk)])
            scores = self.logits(last, [t[0] for t in self.tokens.labels]).double().cpu().numpy()
            for j, r in enumerate(chunk):
                out[r] = scores[j] - np.logaddexp.reduce(scores[j])
            real = sum(len(prompts[r]) for r in chunk)
            self.token_forwards += real
            self.pad_forwards += len(chunk) * width - real
            self.forwards += 1
            start += size
        return out
