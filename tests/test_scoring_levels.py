"""The level-batched prefix scorer returns the reference's log-probabilities in about one forward per trie depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny import tiny_sliding_gemma
from transformers import AutoModelForCausalLM, AutoTokenizer

from icm_plugin.core.examples import Example, group_key
from icm_plugin.core.tasks import get_task
from icm_plugin.errors import ICMError
from icm_plugin.method.bootstrap import group_loo_requests
from icm_plugin.method.objective import loo_requests
from icm_plugin.scoring.base import ScoreRequest
from icm_plugin.scoring.levels import LevelBatchedScorer
from icm_plugin.scoring.prefix import PrefixSharingScorer
from icm_plugin.scoring.reference import ReferenceScorer
from icm_plugin.scoring.registry import make_scorer

TASK = get_task("facts")
WORDS = ["The cat", "A dog", "The sun", "Water", "My friend", "The river", "Paris", "a fish", "the moon"]


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def llama(tiny_model_dir, request):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32,
                                                 attn_implementation=request.param).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def qwen(tiny_model_dir):
    """A tiny random Qwen2 (SmolLM2/Qwen-style full attention with biased q/k/v projections), sdpa."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         attn_implementation="sdpa")
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    return model, tok


@pytest.fixture(scope="module")
def gemma(tiny_model_dir):
    """A tiny random Gemma-3 (eager, as models.load_model sets it), 16-token sliding window far under the prompts."""
    return tiny_sliding_gemma(tiny_model_dir)


def grouped_pool(groups: int, seed: int) -> tuple[list[Example], list[int], list[str]]:
    """``groups`` consistency groups of 1-3 claims, random labels, and a random group order."""
    rng = np.random.default_rng(seed)
    pool = []
    for g in range(groups):
        question = f"What is {rng.choice(WORDS)} number {g}?"
        for m in range(int(rng.integers(1, 4))):
            pool.append(Example(id=f"{g}-{m}", question=question, consistency_id=f"q{g}",
                                choice=" ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))))
    labels = [int(y) for y in rng.integers(0, 2, len(pool))]
    keys = sorted({group_key(e) for e in pool})
    return pool, labels, [keys[i] for i in rng.permutation(len(keys))]


def check_equal(model, tok, reqs) -> tuple[LevelBatchedScorer, PrefixSharingScorer]:
    ref, prefix, levels = ReferenceScorer(model, tok), PrefixSharingScorer(model, tok), LevelBatchedScorer(model, tok)
    a, b = ref.label_logprobs(reqs), levels.label_logprobs(reqs)
    prefix.label_logprobs(reqs)
    assert np.abs(a - b).max() < 1e-4
    assert np.allclose(np.exp(b).sum(1), 1.0)
    assert levels.token_forwards == prefix.token_forwards  # the same trie tokens, no padding
    return levels, prefix


@pytest.mark.parametrize("groups,seed", [(1, 0), (2, 1), (5, 2), (8, 3), (13, 4)])
def test_levels_scorer_equals_reference_on_the_group_layout_in_few_forwards(llama, groups, seed):
    model, tok = llama
    pool, labels, order = grouped_pool(groups, seed)
    _, reqs = group_loo_requests(TASK, pool, labels, order)
    levels, prefix = check_equal(model, tok, reqs)
    assert levels.forwards <= 2 * math.log2(max(groups, 1)) + 2
    if groups >= 8:
        assert levels.forwards < prefix.forwards / 2


@pytest.mark.parametrize("groups,seed", [(6, 5), (11, 6)])
def test_levels_scorer_equals_reference_on_a_qwen_style_model(qwen, groups, seed):
    model, tok = qwen
    pool, labels, order = grouped_pool(groups, seed)
    _, reqs = group_loo_requests(TASK, pool, labels, order)
    levels, _ = check_equal(model, tok, reqs)
    assert levels.forwards <= 2 * math.log2(groups) + 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_levels_scorer_equals_reference_on_random_request_sets(llama, seed):
    # any trie: prompts sharing random prefixes, repeated prompts, a prompt that is another's prefix's leaf
    model, tok = llama
    rng = np.random.default_rng(seed)
    demos = [f"Question: {rng.choice(WORDS)} {k}?\nClaim: {rng.choice(WORDS)}\nI think this claim is "
             f"{rng.choice(['True', 'False'])}" for k in range(8)]
    reqs = []
    for _ in range(14):
        k = int(rng.integers(0, 6))
        reqs.append(ScoreRequest(tuple(demos[int(j)] for j in rng.integers(0, 4, k)),
                                 f"Question: {rng.choice(WORDS)}?\nClaim: x\nI think this claim is"))
    reqs.append(reqs[3])
    reqs.append(ScoreRequest((), reqs[0].query))
    check_equal(model, tok, reqs)


@pytest.mark.parametrize("n,seed", [(7, 0), (12, 1)])
def test_levels_scorer_is_exact_across_a_sliding_window(gemma, n, seed):
    model, tok = gemma
    pool, labels, order = grouped_pool(n, seed)
    _, reqs = group_loo_requests(TASK, pool, labels, order)
    levels, _ = check_equal(model, tok, reqs)
    assert min(len(levels.tokens.full(r)) for r in reqs) > 4 * model.config.sliding_window
    assert levels.forwards <= 2 * math.log2(n) + 2


def test_a_level_over_the_budgets_is_split_into_several_exact_forwards(gemma):
    model, tok = gemma
    rng = np.random.default_rng(3)
    examples = [Example(id=str(i), question=f"What is {rng.choice(WORDS)} {i}?", choice=str(rng.choice(WORDS)))
                for i in range(10)]
    labels = [int(y) for y in rng.integers(0, 2, 10)]
    _, reqs = loo_requests(TASK, examples, labels, list(range(10)))
    ref = ReferenceScorer(model, tok).label_logprobs(reqs)
    whole = LevelBatchedScorer(model, tok)
    whole.label_logprobs(reqs)
    for budget in ("token_budget", "cell_budget", "key_waste"):
        split = LevelBatchedScorer(model, tok)
        longest = max(len(split.tokens.full(r)) for r in reqs)
        # a level holds about one whole prompt's tokens: a third of it forces several forwards per level
        setattr(split, budget, {"token_budget": longest // 3, "cell_budget": longest ** 2 // 3, "key_waste": 1.0}[budget])
        assert np.abs(split.label_logprobs(reqs) - ref).max() < 1e-4
        assert split.forwards > whole.forwards
        assert split.token_forwards == whole.token_forwards


def test_multi_token_label_words_go_depth_first_and_stay_exact(llama):
    model, tok = llama
    words = (" No way at all", " Yes indeed")
    pool, labels, order = grouped_pool(3, 7)
    _, reqs = group_loo_requests(TASK, pool, labels, order)
    a = ReferenceScorer(model, tok, label_words=words).label_logprobs(reqs)
    b = LevelBatchedScorer(model, tok, label_words=words).label_logprobs(reqs)
    assert np.abs(a - b).max() < 1e-4


def test_an_attention_the_mask_cannot_express_is_refused_naming_the_prefix_scorer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model.config._attn_implementation = "flash_attention_2"  # only the config is read; nothing is forwarded
    with pytest.raises(ICMError, match="--scorer prefix") as err:
        LevelBatchedScorer(model, tok)
    assert "flash_attention_2" in str(err.value)


def test_the_registry_builds_the_levels_scorer(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert isinstance(make_scorer("levels", model, tok, TASK.label_words), LevelBatchedScorer)
