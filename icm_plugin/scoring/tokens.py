"""Token layout shared by the transformers scorers, so both see identical token sequences.

A prompt is BOS + for each demo (tokens(demo) + tokens(separator)) + tokens(query); each piece is
tokenized on its own, so prompts that share demonstrations share token prefixes exactly.
"""

from __future__ import annotations

from functools import lru_cache

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import ScoreRequest


class PromptTokens:
    def __init__(self, tokenizer, label_words: tuple[str, ...], separator: str):
        self.tokenizer = tokenizer
        self.separator = separator
        bos = tokenizer.bos_token_id
        self.bos: tuple[int, ...] = (bos,) if bos is not None else ()
        self.sep = self.encode(separator)
        self.labels = [self.encode(w) for w in label_words]
        if any(len(t) == 0 for t in self.labels):
            raise ICMError(f"a label word of {label_words!r} tokenizes to nothing with this tokenizer")
        seen: dict[tuple[int, ...], str] = {}
        for word, tokens in zip(label_words, self.labels, strict=True):
            if tokens in seen:
                raise ICMError(f"the labels {seen[tokens]!r} and {word!r} are the same tokens {list(tokens)} for this "
                               "model's tokenizer, so it cannot tell them apart; change one of them (doc_to_choice)")
            seen[tokens] = word
        # single-token label words: one forward of the prompt scores every label at once
        self.single_token_labels = all(len(t) == 1 for t in self.labels)
        self.encode_cached = lru_cache(maxsize=65536)(self.encode)

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def demo(self, text: str) -> tuple[int, ...]:
        return self.encode_cached(text) + self.sep

    def segments(self, request: ScoreRequest) -> list[tuple[int, ...]]:
        """BOS, one segment per demonstration, then the query."""
        return [self.bos] + [self.demo(d) for d in request.demos] + [self.encode_cached(request.query)]

    def full(self, request: ScoreRequest) -> list[int]:
        return [t for seg in self.segments(request) for t in seg]
