"""The scorer interface: the only thing the search knows about the model (like lm-eval's ``LM``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScoreRequest:
    """Score the label words after ``query``, with ``demos`` (full demonstration texts) before it, in order."""

    demos: tuple[str, ...]
    query: str


class Scorer(ABC):
    """Returns, for each request, log p(label word | demos, query) for every label word.

    The log-probabilities are normalised over the label words (a log-softmax over the candidates' total
    continuation log-probabilities), so each row is a proper distribution over the task's labels.
    ``token_forwards`` counts the tokens the model processed (the cost unit of the benchmark).
    """

    label_words: tuple[str, ...]
    separator: str = "\n\n"
    token_forwards: int = 0

    @abstractmethod
    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        """Array of shape (len(requests), len(label_words)), natural-log probabilities."""

    @property
    def name(self) -> str:
        return type(self).__name__
