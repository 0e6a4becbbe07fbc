"""Base models: the embedded default, a local folder, or any causal LM on the Hugging Face hub.

`resolve_base` turns what a user typed into a folder on disk, `load_base` loads it. Hub
models are downloaded with `huggingface_hub.snapshot_download` (progress bar, safetensors,
config and tokenizer files only) into a hidden partial folder under `models/hub/` that is
renamed into place once the download is complete and loads (`backend.hub_fetch`): an
interrupted download is deleted and starts over next time, and never passes for a finished
one. Remote code runs only when the user sets
`DD_TRUST_REMOTE_CODE=1`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from backend import paths
from backend.errors import ModelLoadError, UserError
from backend.hub_fetch import fetch_snapshot
from backend.modeling.device import pick_device, weights_dtype
from backend.safety import is_hub_id, is_local_name, trust_remote_code

DEFAULT_BASE = "default"
# Weights, configs and tokenizers only: no pickles, no code, no optimizer states.
QUANTIZE = ("4bit", "8bit")
HUB_FILES = [
    "*.safetensors", "*.safetensors.index.json", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "*.tiktoken", "chat_template.*",
]
def hub_cache_dir() -> Path:
    return paths.models_dir() / "hub"


def _missing_files(folder: Path) -> list[str]:
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors weights")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt")):
        missing.append("tokenizer files")
    return missing


def _checked(folder: Path, label: str) -> str:
    missing = _missing_files(folder)
    if missing:
        raise ModelLoadError(f"{label} at {folder} is not a complete model folder (missing {', '.join(missing)})")
    return str(folder)


def resolve_base(base: str) -> str:
    """`default` / a name under models/base / a local folder / a hub id -> a local folder."""
    base = str(base).strip()
    if not base:
        raise ModelLoadError("no base model given; use 'default', a folder, or a hub id owner/name")
    if base == DEFAULT_BASE or (is_local_name(base) and paths.base_dir(base).is_dir()):
        folder = paths.base_dir(base)
        if not folder.is_dir():
            raise ModelLoadError(
                f"the default base model is not built yet ({folder}); run `python -m backend pretrain`"
            )
        return _checked(folder, f"base model {base!r}")
    local = Path(base).expanduser()
    if local.is_dir():
        return _checked(local.resolve(), "model folder")
    if base.startswith(("/", ".", "~")) or base.count("/") > 1 or "\\" in base:
        raise ModelLoadError(f"no model folder at {base}")
    if is_local_name(base):
        raise ModelLoadError(
            f"no base model named {base!r} under {paths.base_models_dir()}; build it with "
            f"`python -m backend pretrain --name {base}` or give a hub id as owner/name"
        )
    if not is_hub_id(base):
        raise ModelLoadError(
            f"invalid model id {base!r}: give 'default', a local folder, or a hub id owner/name "
            "(letters, digits, '-', '_', '.')"
        )
    return _download(base)


def _download(repo_id: str) -> str:
    """Fetch a hub model once into models/hub/<owner>--<name>; later calls need no network."""
    final = hub_cache_dir() / repo_id.replace("/", "--")
    if final.is_dir():
        return _checked(final, f"downloaded model {repo_id}")

    def usable(folder: Path) -> None:
        missing = _missing_files(folder)
        if missing:
            raise ModelLoadError(
                f"{repo_id} cannot be used: it has no {', '.join(missing)} (this app loads safetensors only)"
            )

    fetch_snapshot(repo_id, final, what="model", allow_patterns=HUB_FILES, error=ModelLoadError, check=usable)
    return str(final)


def checkpointing(model) -> bool:
    """Whether gradient (activation) checkpointing is on; transformers 5 renamed the flag."""
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(flag if flag is not None else getattr(model, "is_gradient_checkpointing", False))


def quantize_problems(quantize: str, device: torch.device | str) -> list[str]:
    """What stops `quantize` from running here (empty: nothing): bitsandbytes needs a CUDA GPU."""
    problems = []
    if torch.device(device).type != "cuda":
        problems.append(f"a CUDA GPU (this process runs on {torch.device(device).type})")
    if importlib.util.find_spec("bitsandbytes") is None:
        problems.append("the bitsandbytes package (pip install -r requirements-gpu.txt)")
    return problems


def _quantization(quantize: str | None, device: torch.device, compute: torch.dtype):
    if quantize is None:
        return None
    if quantize not in QUANTIZE:
        raise UserError(f"unknown quantize {quantize!r}; choose {' or '.join(QUANTIZE)} (or none)")
    problems = quantize_problems(quantize, device)
    if problems:
        raise UserError(f"{quantize} loading needs {' and '.join(problems)}; run without quantize here")
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def load_base(base: str, device: torch.device | str | None = None, *, dtype: str = "auto",
              quantize: str | None = None, gradient_checkpointing: bool = False):
    """(model, tokenizer) for a base, the model in eval mode on `device` (default: pick_device()).

    `dtype` (auto, bf16, fp16, fp32) is the weights' precision, `quantize` (4bit, 8bit) loads
    them through bitsandbytes for QLoRA, `gradient_checkpointing` trades compute for memory
    once the model trains. A tokenizer without a pad token gets EOS as pad, so batched
    generation works on any model. Settings that cannot run here raise a UserError before
    anything is loaded.
    """
    device = torch.device(device) if device is not None else pick_device()
    weights = weights_dtype(dtype, device)
    quantization = _quantization(quantize, device, weights)
    folder = resolve_base(base)
    trust = trust_remote_code()
    extra = {"quantization_config": quantization, "device_map": {"": device.index or 0}} if quantization else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust)
        model = AutoModelForCausalLM.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust, dtype=weights, **extra
        )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = " (set DD_TRUST_REMOTE_CODE=1 if it needs its own code)" if "trust_remote_code" in str(e) else ""
        raise ModelLoadError(f"cannot load base model {base!r}: {reason}{hint}") from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if gradient_checkpointing:
        if not model.supports_gradient_checkpointing:
            raise UserError(f"{type(model).__name__} does not support gradient checkpointing")
        # Non-reentrant: LoRA inputs need no requires_grad trick, and the layer hooks see a normal forward.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if not quantization:
        model.to(device)
    model.eval()
    return model, tokenizer
