"""The prefix-sharing scorer: requests whose demonstrations share a prefix share its KV cache.

Requests are arranged in a trie of token segments (BOS, each demonstration, the query); chains without
branches are merged into one forward; a depth-first walk forwards each trie edge once, deep-copying the
cache only where the trie branches. With leave-one-out prompts ordered by divide and conquer (see
``icm_plugin.objective``) this costs about n * L * log2(n) token-forwards instead of n^2 * L, and gives the
same log-probabilities as the reference scorer for the same demonstration order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.hf import HFScorerBase


class _Node:
    __slots__ = ("tokens", "children", "requests", "depth")

    def __init__(self, tokens: tuple[int, ...], depth: int):
        self.tokens: list[int] = list(tokens)
        self.children: dict[tuple[int, ...], _Node] = {}
        self.requests: list[int] = []
        self.depth = depth  # tokens before this node


def build_trie(segments: Sequence[Sequence[tuple[int, ...]]]) -> _Node:
    """Trie over per-request segment lists; single-child chains merged (one forward each)."""
    root = _Node((), 0)
    for r, segs in enumerate(segments):
        node = root
        for seg in segs:
            child = node.children.get(seg)
            if child is None:
                child = node.children[seg] = _Node(seg, node.depth + len(node.tokens))
            node = child
        node.requests.append(r)
    _merge_chains(root)
    return root


def _merge_chains(node: _Node) -> None:
    stack = [node]
    while stack:
        n = stack.pop()
        while len(n.children) == 1 and not n.requests:
            (child,) = n.children.values()
            n.tokens.extend(child.tokens)
            n.children, n.requests = child.children, child.requests
        stack.extend(n.children.values())


def trie_tokens(root: _Node) -> int:
    """Token-forwards a walk of this trie costs."""
    total, stack = 0, [root]
    while stack:
        n = stack.pop()
        total += len(n.tokens)
        stack.extend(n.children.values())
    return total


class PrefixSharingScorer(HFScorerBase):
    """Exact leave-one-out scores at a fraction of the reference's token-forwards."""

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        out = np.zeros((len(requests), len(self.label_words)))
        segments = [self.tokens.segments(r) for r in requests]
        for segs in segments:
            self.check_length(sum(len(s) for s in segs))
        root = build_trie(segments)
        self._walk(root, None, None, out)
        return out

    def _walk(self, root: _Node, cache, last, out: np.ndarray) -> None:
        # explicit stack: (node, cache before the node's tokens)
        stack = [(root, cache, last)]
        while stack:
            node, cache, last = stack.pop()
            if node.tokens:
                cache, last = self.forward(node.tokens, cache)
            for r in node.requests:
                out[r] = self.label_scores(cache, last)
            kids = list(node.children.values())
            for k, child in enumerate(kids):
                # the last child may consume the cache; the others need their own copy
                branch = cache if k == 0 else copy.deepcopy(cache)
                stack.append((child, branch, last))
