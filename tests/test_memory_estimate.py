"""The memory a forward needs is estimated before it runs, so a record that fits the context but not the
machine stops with a clear error naming the record instead of the kernel killing the process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from icm_plugin.cli.main import main
from icm_plugin.scoring.memory import GIB, forward_bytes, parse_size


def gemma3_270m_config():
    """Gemma-3-270M's architecture (the converted model's config.json), without its weights."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                            num_attention_heads=4, num_key_value_heads=1, head_dim=256, sliding_window=512,
                            max_position_embeddings=32768)


def test_the_22k_token_claim_is_estimated_at_the_size_that_killed_the_process():
    # issue 12: 21,963 Gemma tokens (under the 32,768 window) grew the process to 20.8 GB, then exit 137
    needed = forward_bytes(gemma3_270m_config(), 21963, dtype_bytes=2, attn_implementation="eager")
    assert 15 * GIB < needed < 24 * GIB
    lean = forward_bytes(gemma3_270m_config(), 21963, dtype_bytes=2, attn_implementation="sdpa")
    assert lean < needed / 4


def test_eager_attention_grows_with_the_square_of_the_prompt():
    cfg = gemma3_270m_config()
    small, big = (forward_bytes(cfg, n, attn_implementation="eager") for n in (4000, 8000))
    assert 3.3 < big / small <= 4.0  # quadratic scores, linear cache and activations
    # after a cached prefix, only the new tokens' rows of scores are held
    assert forward_bytes(cfg, 100, past_tokens=7900, attn_implementation="eager") < big / 10


def test_the_estimate_bounds_a_measured_eager_forward(tiny_model_dir):
    """A real 2,000-token forward of the tiny model with eager attention: its peak memory (the kernel's resident
    high-water mark, reset just before the forward, in a fresh process) stays under the estimate, and the
    estimate is not wildly above it."""
    script = textwrap.dedent(f"""
        import json, re, torch
        from pathlib import Path
        from transformers import AutoModelForCausalLM
        from icm_plugin.scoring.memory import forward_bytes

        def status(key):
            return int(re.search(key + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

        m = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r}, attn_implementation="eager").eval()
        ids = torch.randint(5, 500, (1, 2000), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            m.model(input_ids=ids[:, :64], use_cache=True)  # warm-up: one-off allocations
            Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from the current size
            before = status("VmRSS")
            m.model(input_ids=ids, use_cache=True)
            peak = status("VmHWM")
        print(json.dumps([peak - before, forward_bytes(m.config, 2000, dtype_bytes=4)]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    measured, estimate = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured <= estimate <= 3 * measured, (measured, estimate)


def test_parse_size():
    assert parse_size("8") == 8 * GIB and parse_size("1.5GiB") == int(1.5 * GIB) and parse_size("512MiB") == 512 << 20
    for bad in ("0", "-1", "nan", "lots"):
        with pytest.raises(ValueError):
            parse_size(bad)


def _pool(folder: Path, long_words: int) -> Path:
    rows = [{"id": f"q{g}-{k}", "question": f"Question {g}?", "choice": f"The answer is {k}.", "consistency_id": f"q{g}",
             "label": int(k == 0)} for g in range(4) for k in range(2)]
    rows[3]["choice"] = " ".join(["word"] * long_words)
    path = folder / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _label(model: Path, data: Path, out: Path, limit: str) -> list[str]:
    return ["label", "--task", "facts", "--model", str(model), "--data", str(data), "--dtype", "float32",
            "--iterations", "4", "--out", str(out), "--memory-limit", limit]


def test_one_record_too_long_for_the_memory_is_named_with_what_helps(tiny_model_dir, tmp_path, capsys):
    data = _pool(tmp_path, long_words=300)
    out = tmp_path / "run"
    assert main(_label(tiny_model_dir, data, out, "2MiB")) == 2  # the long record alone needs more than that
    err = capsys.readouterr().err
    assert "example id 'q1-1'" in err and "too long for this machine" in err and str(data) in err
    assert "A smaller pool cannot help" in err and "shorten or remove that record" in err
    assert "Traceback" not in err and not out.exists()


def test_a_pool_too_big_for_the_memory_is_told_to_shrink(tiny_model_dir, tmp_path, capsys):
    data = _pool(tmp_path, long_words=40)
    assert main(_label(tiny_model_dir, data, tmp_path / "run", "0.5MiB")) == 2
    err = capsys.readouterr().err
    assert "the pool's full prompt" in err and "Label a smaller pool: --limit" in err and "Traceback" not in err


def test_the_same_pool_runs_when_the_memory_suffices(tiny_model_dir, tmp_path):
    data = _pool(tmp_path, long_words=300)
    assert main(_label(tiny_model_dir, data, tmp_path / "run", "4GiB")) == 0


def test_the_batched_scorer_packs_only_as_many_rows_as_fit(tiny_model_dir):
    from icm_plugin.scoring.base import ScoreRequest
    from icm_plugin.scoring.batched import BatchedScorer
    from icm_plugin.scoring.models import load_model

    model, tok = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    scorer = BatchedScorer(model, tok)
    requests = [ScoreRequest(("Claim: the sky is blue. I think this claim is True",) * 4, f"Claim {i}. I think")
                for i in range(8)]
    free = scorer.label_logprobs(requests)
    width = len(scorer.tokens.full(requests[0]))
    scorer.memory_budget = 2 * scorer.forward_memory(width) + 1  # two rows per forward fit
    forwards = scorer.forwards
    tight = scorer.label_logprobs(requests)
    assert scorer.forwards - forwards == 4
    assert abs(tight - free).max() < 1e-4
