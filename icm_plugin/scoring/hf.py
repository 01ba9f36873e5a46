"""Shared pieces of the transformers scorers: one forward over a chunk, and label scores after a prompt."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import numpy as np
import torch

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import Scorer, ScoreRequest
from icm_plugin.scoring.memory import attention_implementation, available_bytes, format_size, forward_bytes
from icm_plugin.scoring.tokens import PromptTokens


class MemoryBudgetError(ICMError):
    """A forward would need more memory than the budget; ``needed``/``budget`` in bytes."""

    def __init__(self, message: str, needed: int, budget: int):
        super().__init__(message)
        self.needed = needed
        self.budget = budget


class HFScorerBase(Scorer):
    """Holds the model, tokenizer and token layout; subclasses decide how prompts are forwarded."""

    #: decoder forwards run so far, and padding tokens they carried (not counted in ``token_forwards``)
    forwards: int = 0
    pad_forwards: int = 0
    #: most bytes one forward may add (None: what the device has available at that moment)
    memory_budget: int | None = None

    def __init__(self, model, tokenizer, label_words: Sequence[str] = (" False", " True"), separator: str = "\n\n"):
        self.model = model
        self.tokenizer = tokenizer
        self.label_words = tuple(label_words)
        self.separator = separator
        self.tokens = PromptTokens(tokenizer, self.label_words, separator)
        self.token_forwards = 0
        self.max_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self.device = next(model.parameters()).device
        # only the hidden states are needed: logits are computed for the label tokens alone (see label_scores)
        self.decoder = model.get_decoder()
        head = model.get_output_embeddings()
        self._head_weight, self._head_bias = head.weight, getattr(head, "bias", None)
        self._softcap = getattr(model.config, "final_logit_softcapping", None)
        # transformers 5 renamed past_key_values to cache
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def dtype_bytes(self) -> int:
        return next(self.model.parameters()).element_size()

    def forward_memory(self, new_tokens: int, past_tokens: int = 0, rows: int = 1) -> int:
        """Estimated bytes a forward adds (``icm_plugin.scoring.memory.forward_bytes`` for this model)."""
        return forward_bytes(self.model.config, new_tokens, past_tokens, rows, self.dtype_bytes)

    def memory_room(self) -> int:
        """The byte budget of one forward: ``memory_budget``, else what the device has available now."""
        return self.memory_budget if self.memory_budget is not None else available_bytes(self.device)

    def check_memory(self, new_tokens: int, past_tokens: int = 0, rows: int = 1) -> None:
        """Raise MemoryBudgetError (an ICMError) when the forward's estimate exceeds the budget."""
        needed = self.forward_memory(new_tokens, past_tokens, rows)
        room = self.memory_room()
        if needed > room:
            impl = attention_implementation(self.model.config)
            raise MemoryBudgetError(
                f"a forward of {rows} x {new_tokens} tokens after {past_tokens} cached ones needs about "
                f"{format_size(needed)} ({impl} attention) but {format_size(room)} is available; label fewer or "
                "shorter examples, or use a device with more memory", needed, room)

    def check_length(self, n_tokens: int) -> None:
        if self.max_length is not None and n_tokens + max(len(t) for t in self.tokens.labels) > self.max_length:
            raise ICMError(
                f"context too long: a prompt of {n_tokens} tokens exceeds the model's {self.max_length}; "
                "label a smaller pool (--limit, or --batch-size) or use a model with a longer context"
            )

    @torch.inference_mode()
    def forward(self, tokens: Sequence[int], cache=None):
        """Forward ``tokens`` after ``cache``; returns (extended cache, hidden state of the last position)."""
        self.check_memory(len(tokens), cache.get_seq_length() if cache is not None else 0)
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        out = self.decoder(input_ids=ids, use_cache=True, **{self._cache_kw: cache})
        self.token_forwards += len(tokens)
        self.forwards += 1
        return getattr(out, self._cache_kw), out.last_hidden_state[0, -1]

    @torch.inference_mode()
    def forward_right_padded(self, rows: Sequence[Sequence[int]], cache=None) -> torch.Tensor:
        """Forward token ``rows`` as one batch after ``cache`` (repeated for every row; consumed), right-padded.

        Returns the hidden state at each row's last real token, shape (rows, hidden). Padding after a row's
        last token cannot change what its real tokens see under the causal mask; the extended cache holds the
        padding, so it is dropped.
        """
        lengths = [len(r) for r in rows]
        width = max(lengths)
        self.check_memory(width, cache.get_seq_length() if cache is not None else 0, len(rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], dtype=torch.long, device=self.device)
        if cache is not None and len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
        hidden = self.decoder(input_ids=ids, use_cache=cache is not None, **{self._cache_kw: cache}).last_hidden_state
        self.token_forwards += sum(lengths)
        self.pad_forwards += len(rows) * width - sum(lengths)
        self.forwards += 1
        return hidden[torch.arange(len(rows), device=self.device), torch.tensor(lengths, device=self.device) - 1]

    def logits(self, hidden: torch.Tensor, rows: Sequence[int] | None = None) -> torch.Tensor:
        """Output logits (fp32) of ``hidden`` for vocabulary ``rows`` (all when None)."""
        w = self._head_weight if rows is None else self._head_weight[list(rows)]
        out = hidden.float() @ w.float().T
        if self._head_bias is not None:
            out = out + (self._head_bias if rows is None else self._head_bias[list(rows)]).float()
        if self._softcap:
            out = torch.tanh(out / self._softcap) * self._softcap
        return out

    @torch.inference_mode()
    def label_scores(self, cache, hidden: torch.Tensor) -> np.ndarray:
        """log p(label word | prompt) for each label word, normalised over the label words.

        Single-token label words need only their own logits (the full-vocabulary normaliser cancels);
        longer ones are scored token by token under the full softmax.
        """
        if self.tokens.single_token_labels:
            return self.single_token_scores(hidden)
        first = self.logits(hidden).log_softmax(-1)
        scores = []
        for label_tokens in self.tokens.labels:
            lp = float(first[label_tokens[0]])
            if len(label_tokens) > 1:
                branch = copy.deepcopy(cache)
                ids = torch.tensor([list(label_tokens[:-1])], dtype=torch.long, device=self.device)
                out = self.decoder(input_ids=ids, use_cache=True, **{self._cache_kw: branch})
                self.token_forwards += len(label_tokens) - 1
                lps = self.logits(out.last_hidden_state[0]).log_softmax(-1)
                lp += float(sum(lps[j, label_tokens[j + 1]] for j in range(len(label_tokens) - 1)))
            scores.append(lp)
        arr = _finite(np.asarray(scores, dtype=np.float64))
        return arr - np.logaddexp.reduce(arr)

    @torch.inference_mode()
    def single_token_scores(self, hidden: torch.Tensor) -> np.ndarray:
        """Label scores from hidden states (one, or a batch of rows) when every label word is one token: their
        own logits, normalised over the label words (the full-vocabulary normaliser cancels)."""
        arr = _finite(self.logits(hidden, [t[0] for t in self.tokens.labels]).double().cpu().numpy())
        return arr - np.logaddexp.reduce(arr, axis=-1, keepdims=True)

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        raise NotImplementedError


def _finite(scores: np.ndarray) -> np.ndarray:
    """``scores`` unchanged; ICMError when the model produced NaN or infinite values (they would poison U)."""
    if not np.isfinite(scores).all():
        raise ICMError("the model returned NaN or infinite label scores (numeric overflow in its dtype?); "
                       "run again with --dtype float32")
    return scores
