"""The prefix-sharing scorer returns the reference's log-probabilities, at a fraction of the token-forwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_sliding_gemma
from transformers import AutoModelForCausalLM, AutoTokenizer

from icm_plugin.core.examples import Example
from icm_plugin.core.tasks import get_task
from icm_plugin.method.objective import context_request, loo_contexts, loo_requests
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.batched import BatchedScorer
from icm_plugin.scoring.prefix import PrefixSharingScorer, branch_cache, build_trie, trie_tokens
from icm_plugin.scoring.reference import ReferenceScorer

TASK = get_task("facts")


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def sliding_lm(tiny_model_dir):
    """A tiny random Gemma-3 (eager attention, as models.load_model sets it) whose sliding window (16 tokens)
    is far shorter than the prompts, so branching and batching are checked across the window, as with
    Gemma-3-270M's 512-token window."""
    return tiny_sliding_gemma(tiny_model_dir)


def make_pool(n: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)
    words = ["The cat", "A dog", "The sun", "Water", "My friend", "The river", "Paris", "a fish", "the moon"]
    return [Example(id=str(i), question=f"What is {rng.choice(words)} number {i}?",
                    choice=" ".join(rng.choice(words, size=int(rng.integers(1, 4)))), consistency_id=str(i // 2))
            for i in range(n)]


def random_labelled(n: int, seed: int) -> tuple[list[Example], list[int], list[int]]:
    """A pool of n, random labels and a random demonstration order."""
    rng = np.random.default_rng(seed)
    labels = [int(y) for y in rng.integers(0, 2, n)]
    return make_pool(n, seed), labels, [int(i) for i in rng.permutation(n)]


def test_loo_contexts_leave_exactly_one_out():
    for n in (1, 2, 3, 7, 16, 33):
        ctx = loo_contexts(list(range(n)))
        assert sorted(ctx) == list(range(n))
        for i, others in ctx.items():
            assert sorted(others) == [j for j in range(n) if j != i]


@pytest.mark.parametrize("n,seed", [(2, 0), (5, 1), (12, 2), (17, 3)])
def test_prefix_scorer_equals_reference_on_random_labelled_sets(lm, n, seed):
    model, tok = lm
    pool, labels, order = random_labelled(n, seed)
    _, reqs = loo_requests(TASK, pool, labels, order)
    ref, fast = ReferenceScorer(model, tok), PrefixSharingScorer(model, tok)
    a, b = ref.label_logprobs(reqs), fast.label_logprobs(reqs)
    assert np.abs(a - b).max() < 1e-4
    assert np.allclose(np.exp(a).sum(1), 1.0)
    if n >= 12:
        assert fast.token_forwards < ref.token_forwards / 2


def test_prefix_scorer_equals_reference_after_flips_and_additions(lm):
    model, tok = lm
    pool = make_pool(14, 5)
    labels: list[int | None] = [1, 0] * 5 + [None] * 4
    order = list(range(14))
    fast, ref = PrefixSharingScorer(model, tok), ReferenceScorer(model, tok)
    for change in [(3, 1), (12, 0), (0, 0), (13, 1)]:  # flips and additions
        labels[change[0]] = change[1]
        _, reqs = loo_requests(TASK, pool, labels, order)
        reqs.append(context_request(TASK, pool, labels, order, 11))  # the proposal query for an unlabelled one
        assert np.abs(fast.label_logprobs(reqs) - ref.label_logprobs(reqs)).max() < 1e-4


@pytest.mark.parametrize("n,seed", [(6, 0), (13, 1)])
def test_prefix_scorer_equals_reference_across_a_sliding_window(sliding_lm, n, seed):
    model, tok = sliding_lm
    pool, labels, order = random_labelled(n, seed)
    _, reqs = loo_requests(TASK, pool, labels, order)
    reqs.append(context_request(TASK, pool, labels, order, order[0]))
    ref, fast = ReferenceScorer(model, tok), PrefixSharingScorer(model, tok)
    a, b = ref.label_logprobs(reqs), fast.label_logprobs(reqs)
    assert min(len(fast.tokens.full(r)) for r in reqs) > 4 * model.config.sliding_window
    assert np.abs(a - b).max() < 1e-4
    # sibling terminal chains went through as batches: fewer forwards than trie edges
    stack, edges = [build_trie([fast.tokens.segments(r) for r in reqs])], 0
    while stack:
        node = stack.pop()
        edges += bool(node.tokens)
        stack.extend(node.children.values())
    assert fast.forwards <= edges - n // 3


@pytest.mark.parametrize("which", ["lm", "sliding_lm"])
def test_batched_scorer_equals_reference(which, request):
    model, tok = request.getfixturevalue(which)
    pool = make_pool(11, 4)
    labels = [1, 0, None, 1, 1, 0, 0, 1, None, 0, 1]
    order = list(range(11))[::-1]
    _, reqs = loo_requests(TASK, pool, labels, order)
    reqs.append(context_request(TASK, pool, labels, order, 2))
    ref, fast = ReferenceScorer(model, tok), BatchedScorer(model, tok)
    fast.token_budget = 3 * max(len(fast.tokens.full(r)) for r in reqs)  # several batches of several rows
    a, b = ref.label_logprobs(reqs), fast.label_logprobs(reqs)
    assert np.abs(a - b).max() < 1e-4
    assert 1 < fast.forwards < len(reqs) and fast.pad_forwards > 0
    assert fast.token_forwards == ref.token_forwards


def test_a_branched_cache_leaves_its_parent_untouched(sliding_lm):
    model, tok = sliding_lm
    scorer = PrefixSharingScorer(model, tok)
    prefix, a, b = list(range(5, 45)), list(range(50, 70)), list(range(80, 90))
    cache, _ = scorer.forward(prefix)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    _, h_a = scorer.forward(a, branch_cache(cache))
    _, h_b = scorer.forward(b, branch_cache(cache))
    for layer, (k, v) in zip(cache.layers, before, strict=True):
        assert torch.equal(layer.keys, k) and torch.equal(layer.values, v)
    _, h_b2 = scorer.forward(b, cache)  # the parent itself, after two branches grew from it
    _, full_a = scorer.forward(prefix + a)
    _, full_b = scorer.forward(prefix + b)
    assert torch.allclose(h_a, full_a, atol=1e-5) and torch.allclose(h_b, full_b, atol=1e-5)
    assert torch.equal(h_b, h_b2)


def test_trie_cost_grows_like_n_log_n():
    # n * log2(n) demonstrations for a leave-one-out sweep, instead of n * (n - 1)
    seg = {i: (i,) * 10 for i in range(64)}
    ctx = loo_contexts(list(range(64)))
    segments = [[(0,)] + [seg[j] for j in ctx[i]] + [(999, i)] for i in range(64)]
    cost = trie_tokens(build_trie(segments))
    assert cost <= 1 + 64 * 10 * 6 + 64 * 2
    assert cost < 64 * 63 * 10 / 8


def test_multi_token_label_words_score_the_whole_continuation(lm):
    model, tok = lm
    words = (" No way at all", " Yes indeed")
    reqs = [ScoreRequest(("Question: a\nClaim: b\nI think this claim is Yes indeed",), "Question: c\nClaim: d\nI think this claim is")]
    a = ReferenceScorer(model, tok, label_words=words).label_logprobs(reqs)
    b = PrefixSharingScorer(model, tok, label_words=words).label_logprobs(reqs)
    assert np.abs(a - b).max() < 1e-4 and np.allclose(np.exp(a).sum(1), 1.0)
    ids = tok("Question: c\nClaim: d\nI think this claim is", add_special_tokens=False)["input_ids"]
    full = [tok.bos_token_id] + tok(reqs[0].demos[0], add_special_tokens=False)["input_ids"] + \
        tok("\n\n", add_special_tokens=False)["input_ids"] + ids
    with torch.no_grad():
        scores = []
        for w in words:
            cont = tok(w, add_special_tokens=False)["input_ids"]
            logits = model(torch.tensor([full + cont])).logits[0].log_softmax(-1)
            scores.append(sum(float(logits[len(full) - 1 + k, t]) for k, t in enumerate(cont)))
    expected = np.array(scores) - np.logaddexp.reduce(scores)
    assert np.abs(a[0] - expected).max() < 1e-4
