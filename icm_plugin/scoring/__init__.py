"""Scorers: log p(label word | demonstrations, prompt) for batches of requests.

``base`` holds the interface every backend implements; ``reference`` is the plain one-prompt-per-request
scorer; ``prefix`` shares KV caches across requests whose demonstrations share a prefix.
"""

from icm_plugin.scoring.base import Scorer, ScoreRequest

__all__ = ["ScoreRequest", "Scorer"]
