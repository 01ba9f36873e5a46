"""A tiny random causal LM + tokenizer for fast, offline tests (not a test file itself).

``make_tiny_model(folder)`` writes a Llama-style model (2 layers, hidden 64) and a byte-level BPE
tokenizer trained from scratch on a built-in English corpus, so unit tests need neither the network
nor a model package. The folder loads with plain ``AutoModelForCausalLM.from_pretrained(folder)`` /
``AutoTokenizer.from_pretrained(folder)`` and with ``lm_eval --model hf --model_args pretrained=FOLDER``.

Like Gemma-3, the tokenizer prepends a BOS token when ``add_special_tokens=True``; " True" and " False"
are single tokens (checked on build).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

BOS, EOS, PAD, UNK = "<bos>", "<eos>", "<pad>", "<unk>"
VOCAB_SIZE = 1024
# Bump when the recipe changes so a cached folder from an older recipe is rebuilt.
RECIPE_VERSION = 1
_STAMP = "tiny_model.json"

_SUBJECTS = [
    "The cat",
    "A dog",
    "The sun",
    "Water",
    "The answer",
    "My friend",
    "This claim",
    "The capital of France",
    "Two plus two",
    "The moon",
    "A triangle",
    "The teacher",
    "Every bird",
    "The river",
    "Some people",
]
_PREDICATES = [
    "is blue",
    "is hot",
    "sleeps all day",
    "has three sides",
    "is Paris",
    "equals four",
    "is made of cheese",
    "flows to the sea",
    "can fly",
    "reads a book",
    "is larger than the earth",
    "likes to run",
    "was written yesterday",
    "is correct",
    "is wrong",
]
_PROSE = (
    "Question: is the following statement true or false? Answer with True or False.\n"
    "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore.\n"
    "It was the best of times, it was the worst of times, it was the age of wisdom.\n"
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 12 25 100 1000. Punctuation: , . ; : ! ? ( ) [ ] \" ' - /\n"
    "Input: What is the sum of 3 and 5? Claim: The answer is 8. I think this Claim is True\n"
    "Input: What is the sum of 3 and 5? Claim: The answer is 9. I think this Claim is False\n"
)


def _corpus() -> list[str]:
    """Deterministic training text: labelled claims (so " True"/" False" merge early) plus prose."""
    lines = [_PROSE]
    for i, subject in enumerate(_SUBJECTS):
        for j, predicate in enumerate(_PREDICATES):
            label = "True" if (i + j) % 2 == 0 else "False"
            lines.append(f"Claim: {subject} {predicate}. I think this claim is {label}\n")
            lines.append(f"{subject.lower()} {predicate}, and that is {label.lower()}.\n")
    return lines


def _build_tokenizer():
    """Train a byte-level BPE (vocab ~1k) and wrap it as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, EOS, BOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=True,
        model_max_length=2048,
    )


def _build_model(tokenizer, seed: int):
    """A random Llama-style causal LM sized for CPU tests (2 layers, hidden 64, 4 heads / 2 KV heads)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Larger-than-default init so logits differ visibly between tokens (default std 0.02 is nearly uniform).
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.2)
    return model.eval()


def _is_built(folder: Path, seed: int) -> bool:
    stamp = folder / _STAMP
    if not stamp.is_file():
        return False
    try:
        meta = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return meta == {"seed": seed, "recipe": RECIPE_VERSION}


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Build (or reuse) a tiny random causal LM + tokenizer in ``folder`` and return ``folder``.

    Same ``seed`` -> byte-identical weights and the same tokenizer. If ``folder`` already holds a model
    built with this seed and recipe it is returned untouched (cheap to call repeatedly). The folder is
    written to a sibling temp dir and renamed into place, so an interrupted build leaves nothing behind.

    Raises:
        AssertionError: the trained tokenizer does not encode " True"/" False" as single tokens
            (a recipe bug, not a user error).
    """
    folder = Path(folder)
    if _is_built(folder, seed):
        return folder

    tokenizer = _build_tokenizer()
    for word in (" True", " False"):
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, f"tiny tokenizer splits {word!r} into {ids}"
    model = _build_model(tokenizer, seed)

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; the cache folder should be readable like any model folder
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _STAMP).write_text(json.dumps({"seed": seed, "recipe": RECIPE_VERSION}))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_sliding_gemma(tokenizer_dir: Path):
    """A tiny random Gemma-3 (eager attention, as models.load_model sets it) with a 16-token sliding window, far
    shorter than the test prompts, as Gemma-3-270M's 512-token window is than long many-shot prompts.
    Returns (model, tokenizer); the tokenizer is the tiny model's at ``tokenizer_dir``."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, sliding_window=16, max_position_embeddings=4096,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        attn_implementation="eager")
    return Gemma3ForCausalLM(config).eval(), tok
