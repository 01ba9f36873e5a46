"""The tiny random Llama of ``tests/tiny.py`` written as a float32 GGUF, so llama.cpp can serve it (not a test file).

``tiny_gguf(model_dir, out)`` writes the weights unquantised with the ``gguf`` package (what llama.cpp's own
convert_hf_to_gguf.py does for a Llama: Q and K rows permuted from Hugging Face's rotate-half RoPE layout to
llama.cpp's, tied output embeddings) and the byte-level BPE tokenizer as a ``gpt2`` vocabulary with its merges
and GPT-2's pre-tokenizer (the tiny tokenizer's ByteLevel pre-tokenizer splits with the same regex).
"""

from __future__ import annotations

import json
from pathlib import Path


def _permute(w, n_head: int):
    # Hugging Face -> llama.cpp RoPE row order (convert_hf_to_gguf.py LlamaModel.permute)
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_gguf(model_dir: Path, out: Path) -> Path:
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    tok = json.loads((Path(model_dir) / "tokenizer.json").read_text())
    weights = load_file(str(Path(model_dir) / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    head_dim = cfg["hidden_size"] // n_head

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(float((cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tok["model"]["vocab"]
    specials = {t["content"]: t["id"] for t in tok["added_tokens"]}
    by_id = sorted({**vocab, **specials}.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    w.add_vocab_size(len(by_id))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list([t for t, _ in by_id])
    w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t, _ in by_id])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(specials["<bos>"])
    w.add_eos_token_id(specials["<eos>"])
    w.add_pad_token_id(specials["<pad>"])
    w.add_add_bos_token(True)

    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    w.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"].astype(np.float32))
    for i in range(cfg["num_hidden_layers"]):
        for hf, cpp in names.items():
            t = weights[f"model.layers.{i}.{hf}.weight"].astype(np.float32)
            if cpp == "attn_q":
                t = _permute(t, n_head)
            elif cpp == "attn_k":
                t = _permute(t, n_kv)
            w.add_tensor(f"blk.{i}.{cpp}.weight", np.ascontiguousarray(t))
    w.add_tensor("output_norm.weight", weights["model.norm.weight"].astype(np.float32))
    if not cfg.get("tie_word_embeddings", False):
        w.add_tensor("output.weight", weights["lm_head.weight"].astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
