"""The level-batched prefix scorer: the prefix trie walked breadth first, one forward per trie depth.

Requests form the same trie of token segments as for the prefix-sharing scorer (``prefix.build_trie``: BOS,
each demonstration, the query; branchless chains merged). That scorer walks the trie depth first, one small
forward per edge (about 2n for a leave-one-out sweep), which on a GPU is bound by latency. Here every edge at
one depth of the trie goes through the model in ONE forward ("tree attention"): the edges' tokens are packed
one after another into a single row, and they attend to a pool holding the key/value states of every trie
token forwarded before. An explicit 4-D mask lets each token see exactly its own prompt (its ancestors' tokens
in the pool, and the earlier tokens of its own edge) and explicit position ids give each token its position in
its own prompt. Nothing is padded, so there is no padding hole to attend to; tokens of other prompts in the
packed row or the pool are masked out. With the group layout of ``bootstrap.group_loo_requests`` (a group's
members share one context, then each member's query is a leaf), G groups take about log2(G) + 2 forwards.

Exactness: full-attention layers see what the reference shows them. Sliding-window layers (Gemma-3) get a
second mask that also drops keys a window or more behind in prompt positions, as transformers' sliding mask
does for one whole prompt; a model whose decoder takes one mask per layer type (``causal_mask_mapping``, as
Gemma-3's does) or whose layers all slide is exact. Anything the mask cannot express (flash attention, which
takes no mask; chunked or linear attention; mixed sliding layers in a decoder that takes a single mask) is
refused at construction with an ICMError that names ``--scorer prefix``. Multi-token label words need a
cache per prompt: those calls go through the depth-first prefix scorer.

Memory: a forward takes at most ``token_budget`` new tokens and ``cell_budget`` mask cells (new tokens x
keys it attends over); a level over either budget is split into several forwards, edges in trie order, each
forward gathering only the pool tokens its edges descend from. The pool keeps the key/value states of every
inner trie token of one call (about n * L * log2(n) tokens for a leave-one-out sweep of n claims of L tokens;
query leaves are not kept) and is released when the call returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch

from icm_plugin.errors import ICMError
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.prefix import PrefixSharingScorer, _Node, build_trie

#: attention implementations that take an explicit 4-D mask (flash attention takes none)
_MASKED_ATTENTION = ("eager", "sdpa")


def layer_types(config) -> list[str]:
    """Each decoder layer's attention type: ``full_attention`` or ``sliding_attention`` (others are refused)."""
    n = int(config.num_hidden_layers)
    types = getattr(config, "layer_types", None)
    if types:
        return list(types)
    window = getattr(config, "sliding_window", None)
    return ["sliding_attention" if window and getattr(config, "use_sliding_window", True) else "full_attention"] * n


class _Pool:
    """Key/value states of the trie tokens forwarded so far, per layer, shape (1, kv_heads, tokens, head_dim)."""

    def __init__(self, device):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.positions = torch.zeros(0, dtype=torch.long, device=device)  # each token's position in its prompt
        self.size = 0

    def cache(self, index: torch.Tensor | None):
        """A fresh transformers cache holding the pool tokens ``index`` (all when None), in pool order."""
        from transformers import DynamicCache

        if self.size == 0:
            return DynamicCache()
        # plain (non-sliding) layers: every key stays, the mask decides what is seen
        if index is None:
            return DynamicCache(ddp_cache_data=list(zip(self.keys, self.values, strict=True)))
        return DynamicCache(ddp_cache_data=[(k.index_select(2, index), v.index_select(2, index))
                                            for k, v in zip(self.keys, self.values, strict=True)])

    def extend(self, cache, n_keys: int, keep: torch.Tensor, positions: torch.Tensor) -> None:
        """Append the new tokens ``keep`` (indices into the forward's new tokens) from ``cache`` to the pool."""
        if keep.numel() == 0:
            return
        new_k = [layer.keys[:, :, n_keys:].index_select(2, keep) for layer in cache.layers]
        new_v = [layer.values[:, :, n_keys:].index_select(2, keep) for layer in cache.layers]
        if self.size == 0:
            self.keys, self.values = new_k, new_v
        else:
            self.keys = [torch.cat([a, b], dim=2) for a, b in zip(self.keys, new_k, strict=True)]
            self.values = [torch.cat([a, b], dim=2) for a, b in zip(self.values, new_v, strict=True)]
        self.positions = torch.cat([self.positions, positions])
        self.size += int(keep.numel())


class _Row:
    """One trie edge in a level: its node and the pool spans (start, end) of its ancestors, root first."""

    __slots__ = ("node", "spans")

    def __init__(self, node: _Node, spans: tuple[tuple[int, int], ...]):
        self.node = node
        self.spans = spans


class LevelBatchedScorer(PrefixSharingScorer):
    """The prefix scorer's log-probabilities in about one forward per trie depth (see the module docstring)."""

    #: most new tokens one forward takes
    token_budget: int = 16384
    #: most mask cells (new tokens x keys) one forward takes; bounds the attention scores' memory
    cell_budget: int = 1 << 28
    #: most keys one forward gathers, as a multiple of its longest prompt so far: the masked-out keys of a
    #: packed forward still cost attention arithmetic, so a level whose edges descend from very different
    #: prefixes is cut where the waste would pass this factor (None: never)
    key_waste: float | None = None

    def __init__(self, model, tokenizer, label_words: Sequence[str] = (" False", " True"), separator: str = "\n\n"):
        super().__init__(model, tokenizer, label_words, separator)
        config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        impl = getattr(config, "_attn_implementation", None) or "eager"
        self._layer_types = layer_types(config)
        self._window = int(getattr(config, "sliding_window", 0) or 0)
        unsupported = sorted(set(self._layer_types) - {"full_attention", "sliding_attention"})
        if impl not in _MASKED_ATTENTION:
            why = f"attention implementation {impl!r} takes no explicit mask"
        elif unsupported:
            why = f"layer types {unsupported} cannot be expressed as a mask"
        elif "sliding_attention" in self._layer_types and not self._window:
            why = "sliding layers without a sliding_window"
        elif len(set(self._layer_types)) > 1 and not _takes_mask_per_layer_type(self.decoder):
            why = "its decoder takes one mask for both full and sliding layers"
        else:
            why = None
        if why is not None:
            raise ICMError(f"--scorer levels cannot score {type(model).__name__} exactly: {why}; "
                           "use --scorer prefix (same log-probabilities, one forward per trie edge)")
        self._eager = impl == "eager"

    def label_logprobs(self, requests: Sequence[ScoreRequest]) -> np.ndarray:
        if not self.tokens.single_token_labels:  # a multi-token label needs its prompt's own cache: depth first
            return super().label_logprobs(requests)
        out = np.zeros((len(requests), len(self.label_words)))
        segments = [self.tokens.segments(r) for r in requests]
        for segs in segments:
            self.check_length(sum(len(s) for s in segs))
        root = build_trie(segments)
        level = [_Row(root, ())] if root.tokens else [_Row(c, ()) for c in root.children.values()]
        pool = _Pool(self.device)
        while level:
            below: list[_Row] = []
            for chunk in self._chunks(level):
                below.extend(self._forward_level(chunk, pool, out))
            level = below
        return out

    def _chunks(self, level: list[_Row]) -> list[list[_Row]]:
        """Split a level into forwards within ``token_budget`` and ``cell_budget`` (at least one edge each)."""
        chunks: list[list[_Row]] = []
        chunk: list[_Row] = []
        seen: set[tuple[int, int]] = set()
        queries = keys = longest = 0
        for row in level:
            q = len(row.node.tokens)
            prompt = sum(b - a for a, b in row.spans) + q
            new = []  # ancestor spans this row adds to the chunk's keys (an ancestor's ancestors are in already)
            for span in reversed(row.spans):
                if span in seen:
                    break
                new.append(span)
            k = sum(b - a for a, b in new)
            waste = self.key_waste is not None and keys + k > self.key_waste * max(longest, prompt)
            if chunk and (queries + q > self.token_budget or waste
                          or (queries + q) * (keys + k + queries + q) > self.cell_budget):
                chunks.append(chunk)
                chunk, seen, queries, keys, longest = [], set(), 0, 0, 0
                new = list(row.spans)
                k = sum(b - a for a, b in new)
            chunk.append(row)
            seen.update(new)
            queries, keys, longest = queries + q, keys + k, max(longest, prompt)
        if chunk:
            chunks.append(chunk)
        return chunks

    @torch.inference_mode()
    def _forward_level(self, rows: list[_Row], pool: _Pool, out: np.ndarray) -> list[_Row]:
        """Forward the edges ``rows`` as one packed row over the pool; score their requests; returns the next
        level's rows (their children) and keeps their own keys/values in the pool."""
        spans = sorted({s for row in rows for s in row.spans})
        n_keys = sum(b - a for a, b in spans)
        offset, at = {}, 0
        for a, b in spans:
            offset[(a, b)] = at
            at += b - a
        dev = self.device
        index = None if n_keys == pool.size else torch.cat(
            [torch.arange(a, b, device=dev) for a, b in spans]) if spans else torch.zeros(0, dtype=torch.long, device=dev)
        starts, pos, ids = [], [], []
        q = 0
        for row in rows:
            starts.append(q)
            ids.extend(row.node.tokens)
            pos.append(torch.arange(row.node.depth, row.node.depth + len(row.node.tokens), device=dev))
            q += len(row.node.tokens)
        positions = torch.cat(pos)
        seen = torch.zeros(q, n_keys + q, dtype=torch.bool, device=dev)
        for row, a in zip(rows, starts, strict=True):
            b = a + len(row.node.tokens)
            for span in row.spans:
                o = offset[span]
                seen[a:b, o:o + span[1] - span[0]] = True
            seen[a:b, n_keys + a:n_keys + b] = torch.ones(b - a, b - a, dtype=torch.bool, device=dev).tril()
        mask = self._masks(seen, positions, pool.positions if index is None else pool.positions[index])
        cache = pool.cache(index)
        hidden = self.decoder(input_ids=torch.tensor([ids], dtype=torch.long, device=dev), attention_mask=mask,
                              position_ids=positions[None], use_cache=True,
                              **{self._cache_kw: cache}).last_hidden_state[0]
        self.token_forwards += q
        self.forwards += 1
        scored = [(row, a) for row, a in zip(rows, starts, strict=True) if row.node.requests]
        if scored:
            last = torch.tensor([a + len(row.node.tokens) - 1 for row, a in scored], device=dev)
            for (row, _), scores in zip(scored, self.single_token_scores(hidden[last]), strict=True):
                for r in row.node.requests:
                    out[r] = scores
        inner = [(row, a) for row, a in zip(rows, starts, strict=True) if row.node.children]
        keep = torch.cat([torch.arange(a, a + len(row.node.tokens), device=dev) for row, a in inner]) if inner \
            else torch.zeros(0, dtype=torch.long, device=dev)
        base = pool.size
        pool.extend(cache, n_keys, keep, positions.index_select(0, keep))
        below: list[_Row] = []
        for row, _ in inner:
            span = (base, base + len(row.node.tokens))
            base = span[1]
            below.extend(_Row(child, row.spans + (span,)) for child in row.node.children.values())
        return below

    def _masks(self, seen: torch.Tensor, q_pos: torch.Tensor, key_pos: torch.Tensor):
        """The decoder's attention mask(s) from the boolean (queries, keys) matrix of what each token may see."""
        full = seen
        sliding = None
        if "sliding_attention" in self._layer_types:
            k_pos = torch.cat([key_pos, q_pos])
            sliding = seen & (q_pos[:, None] - k_pos[None, :] < self._window)  # transformers' sliding_window_overlay
        masks = {"full_attention": full, "sliding_attention": sliding}
        masks = {k: self._as_attention_mask(v) for k, v in masks.items() if v is not None}
        if len(set(self._layer_types)) > 1:
            return masks
        return masks[self._layer_types[0]]

    def _as_attention_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        # sdpa takes a boolean mask (True = attend); eager adds the mask to the scores
        if not self._eager:
            return allowed[None, None]
        dtype = self._head_weight.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)[None, None]


def _takes_mask_per_layer_type(decoder) -> bool:
    """Whether the decoder accepts ``attention_mask`` as a dict per layer type (transformers has no flag for it)."""
    try:
        return "causal_mask_mapping" in inspect.getsource(type(decoder).forward)
    except (OSError, TypeError):
        return False
