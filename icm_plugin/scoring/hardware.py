"""Which device and dtype a model runs in: ``--device`` / ``--dtype`` resolved against this machine.

``--dtype auto`` is bfloat16 on CUDA (float16 where bf16 is unsupported), and on a CPU bfloat16 only where the
CPU computes it in hardware: elsewhere torch emulates it and it is several times slower than float32."""

from __future__ import annotations

from typing import Any

from icm_plugin.errors import ICMError

DTYPES = ("auto", "float32", "bfloat16", "float16")


def pick_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ICMError(f"--device {device!r} asked for CUDA but torch sees no GPU: use --device cpu")
    return device


def pick_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise ICMError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bfloat16() else torch.float32
    return getattr(torch, dtype)


def cpu_has_fast_bfloat16() -> bool:
    """True where this CPU computes bfloat16 in hardware (x86 AVX-512 BF16 or AMX, or what oneDNN calls
    bf16-capable, e.g. ARM with BF16). There bfloat16 is about 2x faster than float32 for these small models;
    elsewhere torch emulates it and it is 4-6x SLOWER (Gemma-3-270M on a 2-core AVX2-only AMD EPYC: 474
    tokens/s in float32, 82 in bfloat16; one evaluation of 32 claims 16.9 s against 62.5 s)."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str = "auto", device: str | None = None) -> str:
    """The dtype name ``dtype`` (``--dtype``) stands for on ``device``: ``"auto"`` resolved as ``load_model``
    does (for code that hands a dtype name on, e.g. to lm-eval)."""
    return dtype_name(pick_dtype(dtype, pick_device(device)))


def dtype_name(torch_dtype: Any) -> str:
    """``torch.float32`` -> ``"float32"``: the name ``--dtype`` and lm-eval's ``dtype=`` take."""
    return str(torch_dtype).removeprefix("torch.")
