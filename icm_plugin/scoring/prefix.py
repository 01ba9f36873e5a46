"""The prefix-sharing scorer: requests whose demonstrations share a prefix share its KV cache.

Requests are arranged in a trie of token segments (BOS, each demonstration, the query); chains without
branches are merged into one forward; a depth-first walk forwards each trie edge once. Where the trie
branches, the cache is branched by reference, not copied (a ``DynamicCache`` extends its tensors with
``torch.cat``, never in place, so two branches can share the tensors of their common prefix). The terminal
chains under one node (the leaves of the trie: the last demonstration and the query) go through the model
together as one batch, right-padded: padding after the last real token cannot change what the real tokens
see under the causal mask, and a leaf's cache is never extended again. With leave-one-out prompts ordered by
divide and conquer (see ``icm_plugin.method.objective``) this costs about n * L * log2(n) token-forwards instead of
n^2 * L, and gives the same log-probabilities as the reference scorer for the same demonstration order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.hf import HFScorerBase

# most rows one batched forward of terminal chains takes (each row holds its own copy of the prefix cache)
MAX_LEAF_BATCH = 16


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


def branch_cache(cache):
    """A cache that shares ``cache``'s tensors and can be extended without touching ``cache``.

    Transformers' dynamic cache layers replace their tensors on update (``torch.cat``), so a shallow copy of
    each layer object is an independent branch; caches of another shape are deep-copied.
    """
    if cache is None:
        return None
    layers = getattr(cache, "layers", None)
    if type(cache).__name__ != "DynamicCache" or layers is None or not all(
            type(layer).__name__ in ("DynamicLayer", "DynamicSlidingWindowLayer") for layer in layers):
        return copy.deepcopy(cache)
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in layers]
    return out


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
        # explicit stack: (node, cache before the node's tokens, hidden state of the token before it)
        stack = [(root, cache, last)]
        while stack:
            node, cache, last = stack.pop()
            if node.tokens:
                cache, last = self.forward(node.tokens, cache)
            for r in node.requests:
                out[r] = self.label_scores(cache, last)
            kids = list(node.children.values())
            leaves = [k for k in kids if not k.children] if self.tokens.single_token_labels else []
            if len(leaves) > 1:  # sibling terminal chains: batched (a lone one goes below, and may take the cache)
                for start in range(0, len(leaves), MAX_LEAF_BATCH):
                    self._forward_leaves(leaves[start:start + MAX_LEAF_BATCH], cache, out)
                kids = [k for k in kids if k.children]
            for k, child in enumerate(kids):
                # the first child pushed is walked last and may consume the cache; the others branch it
                stack.append((child, cache if k == 0 else branch_cache(cache), last))

    def _forward_leaves(self, leaves: list[_Node], cache, out: np.ndarray) -> None:
        """Forward terminal chains that follow the same prefix as one right-padded batch."""
        hidden = self.forward_right_padded([leaf.tokens for leaf in leaves], branch_cache(cache))
        for leaf, h in zip(leaves, hidden, strict=True):
            scores = self.single_token_scores(h)  # row by row: the same arithmetic as an unbatched leaf
            for r in leaf.requests:
                out[r] = scores
