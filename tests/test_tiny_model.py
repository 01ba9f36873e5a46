"""Pins the tiny test model: single-token labels, plain from_pretrained reload, determinism."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import make_tiny_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def test_label_words_are_single_tokens(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    true_ids = tok(" True", add_special_tokens=False)["input_ids"]
    false_ids = tok(" False", add_special_tokens=False)["input_ids"]
    assert len(true_ids) == 1 and len(false_ids) == 1
    assert true_ids != false_ids


def test_tokenizer_has_bos_eos_pad_and_prepends_bos(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert None not in (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert tok("Claim: x")["input_ids"][0] == tok.bos_token_id


def test_reloads_with_plain_from_pretrained(tiny_model_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    batch = tok("I think this claim is True", return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()


def test_same_seed_same_model_other_seed_differs(tmp_path: Path) -> None:
    a = make_tiny_model(tmp_path / "a", seed=0)
    b = make_tiny_model(tmp_path / "b", seed=0)
    c = make_tiny_model(tmp_path / "c", seed=1)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    assert (a / "model.safetensors").read_bytes() != (c / "model.safetensors").read_bytes()


def test_rebuild_into_existing_folder_is_reused(tmp_path: Path) -> None:
    folder = make_tiny_model(tmp_path / "m", seed=0)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert make_tiny_model(folder, seed=0) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
