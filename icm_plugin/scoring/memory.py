"""How much memory one forward of a transformers model needs, and how much the machine has for it.

A prompt that fits the model's context can still need more memory than the machine has: with eager attention
(the path Gemma models load with, see ``icm_plugin.scoring.models``) every layer materialises the attention scores of
every head, ``rows x heads x new tokens x all tokens``, in the model's dtype, again as float32 for the
softmax, and once more cast back. A 22k-token prompt on Gemma-3-270M needs about 18 GB for that alone. The
scorers check this estimate before each forward and stop with an ICMError instead of being killed by the
kernel. The estimate is of the memory a forward adds; the weights are already loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GIB = 1024**3
# attention implementations that never hold the full score matrix (they work block by block)
LEAN_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")


def _text_config(config: Any) -> Any:
    return getattr(config, "text_config", None) or config


def attention_implementation(config: Any) -> str:
    """The attention path a loaded model uses ("eager", "sdpa", ...); "eager" when unknown."""
    return str(getattr(config, "_attn_implementation", None) or "eager")


def forward_bytes(config: Any, new_tokens: int, past_tokens: int = 0, rows: int = 1, dtype_bytes: int = 4,
                  attn_implementation: str | None = None) -> int:
    """Bytes one decoder forward of ``rows`` x ``new_tokens`` after ``past_tokens`` cached ones adds, at most.

    Sums: the KV cache of all layers for every token (``rows x layers x 2 x kv_heads x head_dim x tokens``),
    the largest layer's attention temporaries (eager: the scores in the model dtype, their float32 softmax and
    its cast back, for every head, plus the two attention masks; lean paths: the masks only) and the MLP and
    residual activations of the new tokens. ``dtype_bytes``: bytes per element of the model's dtype (4 float32,
    2 bfloat16/float16).
    """
    cfg = _text_config(config)
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(cfg, "num_key_value_heads", None) or heads)
    hidden = int(getattr(cfg, "hidden_size", 0) or 0)
    head_dim = int(getattr(cfg, "head_dim", None) or (hidden // heads if heads else 0))
    layers = int(getattr(cfg, "num_hidden_layers", 1) or 1)
    inter = int(getattr(cfg, "intermediate_size", None) or 4 * hidden)
    impl = attn_implementation or attention_implementation(config)
    total = past_tokens + new_tokens
    pairs = rows * new_tokens * total
    masks = 2 * pairs * dtype_bytes  # full and sliding-window masks (Gemma-3 builds both)
    scores = 0 if impl in LEAN_ATTENTION else heads * pairs * (2 * dtype_bytes + 4)
    cache = rows * layers * 2 * kv_heads * head_dim * total * dtype_bytes
    activations = rows * new_tokens * (3 * inter + 6 * hidden + heads * head_dim * 3) * dtype_bytes
    return int(masks + scores + cache + activations)


def available_bytes(device: Any = "cpu") -> int:
    """Memory a new allocation can get now: free GPU memory on a CUDA device; else the system's available
    memory (psutil), capped by this process's cgroup limit when it has one."""
    if str(device).startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    import psutil

    avail = int(psutil.virtual_memory().available)
    limit = _cgroup_room()
    return min(avail, limit) if limit is not None else avail


def _cgroup_room() -> int | None:
    """cgroup v2 limit minus usage for this process, or None without a limit."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text())
    except (OSError, IndexError, ValueError):
        return None


def format_size(n: int) -> str:
    """Bytes as "1.5 GiB" or "12.3 MiB"."""
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / 1024**2:.1f} MiB"


_UNITS = {"GIB": GIB, "MIB": 1024**2, "GB": 10**9, "MB": 10**6, "G": GIB, "M": 1024**2}


def parse_size(text: str) -> int:
    """``"2GiB"``, ``"512MB"``, ``"1.5G"`` or a number of GiB -> bytes. Raises ValueError."""
    t = text.strip().upper().replace(" ", "")
    unit = next((u for u in _UNITS if t.endswith(u)), None)
    value = float(t[: -len(unit)] if unit else t)
    if not 0 < value < float("inf"):
        raise ValueError(f"{text!r} is not a positive size")
    return int(value * (_UNITS[unit] if unit else GIB))
