"""Shared pieces of the transformers scorers: one forward over a chunk, and label scores after a prompt."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import numpy as np
import torch

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import Scorer, ScoreRequest
from icm_plugin.scoring.tokens import PromptTokens


class HFScorerBase(Scorer):
    """Holds the model, tokenizer and token layout; subclasses decide how prompts are forwarded."""

    def __init__(self, model, tokenizer, label_words: Sequence[str] = (" False", " True"), separator: str = "\n\n"):
        self.model = model
        self.tokenizer = tokenizer
        self.label_words = tuple(label_words)
        self.separator = separator
        self.tokens = PromptTokens(tokenizer, self.label_words, separator)
        self.token_forwards = 0
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self.device = next(model.parameters()).device
        # transformers 5 renamed past_key_values to cache
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    def check_length(self, n_tokens: int) -> None:
        if self.max_length is not None and n_tokens + max(len(t) for t in self.tokens.labels) > self.max_length:
            raise ICMError(
                f"context too long: a prompt of {n_tokens} tokens exceeds the model's {self.max_length}; "
                "label a smaller pool (--limit, or --batch-size) or use a model with a longer context"
            )

    @torch.inference_mode()
    def forward(self, tokens: Sequence[int], cache=None):
        """Forward ``tokens`` after ``cache``; returns (extended cache, log-softmax of the last position, fp32)."""
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        self.token_forwards += len(tokens)
        return getattr(out, self._cache_kw), out.logits[0, -1].float().log_softmax(-1)

    @torch.inference_mode()
    def label_scores(self, cache, last_logprobs: torch.Tensor) -> np.ndarray:
        """log p(label word | prompt) for each label word, normalised over the label words."""
        scores = []
        for label_tokens in self.tokens.labels:
            lp = float(last_logprobs[label_tokens[0]])
            if len(label_tokens) > 1:  # score the whole continuation, token by token
                branch = copy.deepcopy(cache)
                ids = torch.tensor([list(label_tokens[:-1])], dtype=torch.long, device=self.device)
                out = self.model(input_ids=ids, use_cache=True, **{self._cache_kw: branch})
                self.token_forwards += len(label_tokens) - 1
                lps = out.logits[0].float().log_softmax(-1)
                lp += float(sum(lps[j, label_tokens[j + 1]] for j in range(len(label_tokens) - 1)))
            scores.append(lp)
        arr = np.asarray(scores, dtype=np.float64)
        return arr - np.logaddexp.reduce(arr)

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        raise NotImplementedError
