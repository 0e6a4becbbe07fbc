"""LoRA adapters through peft: attach for training, save, and load several onto one base.

Saving and loading go through peft's own `save_pretrained` / `from_pretrained` /
`load_adapter` (safetensors only), so an adapter folder is a standard peft artefact that
loads outside this project too. Several adapters can sit on one loaded base and be switched
with `set_adapter` or bypassed with `disable_adapter()`: the Compare page shows base,
baseline and decoupled from one model in memory.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from peft import LoraConfig, PeftModel, TaskType, get_peft_model, prepare_model_for_kbit_training
from safetensors import safe_open

from backend.errors import ModelLoadError, UserError
from backend.modeling.atomic import atomic_dir
from backend.modeling.base import checkpointing
from backend.modeling.targets import linear_layers, resolve_targets
from backend.runs import RunConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@contextmanager
def _quiet() -> Iterator[None]:
    """peft 0.21 calls a transformers method that transformers 5 renamed: harmless, noisy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def attach_lora(model, config: RunConfig) -> PeftModel:
    """Wrap `model` with a fresh LoRA adapter ("default"); only LoRA weights stay trainable.

    Targets come from `resolve_targets` (the config's list, checked, or every linear layer);
    a 4/8-bit model first goes through peft's k-bit preparation (QLoRA). The saved
    adapter_config.json lists exactly the modules that were adapted.
    """
    targets = resolve_targets(model, config.lora_targets)
    if getattr(model, "is_quantized", False) or getattr(model, "quantization_method", None):
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing(model),
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    kinds = {type(m).__name__ for n, m in model.named_modules()
             if any(n == t or n.endswith("." + t) for t in targets)}
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        fan_in_fan_out=kinds == {"Conv1D"},  # GPT-2 stores its weights transposed
        task_type=TaskType.CAUSAL_LM,
        bias="none",
    )
    try:
        with _quiet():
            return get_peft_model(model, lora)
    except ValueError as e:
        layers = ", ".join(f"{n} ({kind})" for n, kind in linear_layers(model).items())
        raise UserError(
            f"LoRA targets {', '.join(targets)} do not fit this model ({str(e).splitlines()[0]}); "
            f"its linear layers are: {layers}"
        ) from None


def save_adapter(peft_model: PeftModel, out_dir: Path) -> Path:
    """Save the active adapter (safetensors) into `out_dir`, replacing it atomically."""
    out_dir = Path(out_dir)
    name = peft_model.active_adapter
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(str(tmp), selected_adapters=[name], safe_serialization=True)
        nested = tmp / name
        if name != "default" and nested.is_dir():  # peft nests adapters not called "default"
            for item in nested.iterdir():
                shutil.move(str(item), tmp / item.name)
            nested.rmdir()
        if not (tmp / ADAPTER_WEIGHTS).is_file():
            raise RuntimeError(f"peft wrote no {ADAPTER_WEIGHTS} into {tmp}")
    return out_dir


def load_adapter(base_model, adapter_dir: Path, name: str) -> PeftModel:
    """Load an adapter under `name` onto a base (or onto a PeftModel that already holds others).

    Returns the PeftModel with `name` active, frozen and in eval mode; switch later with
    `model.set_adapter(other, inference_mode=True)` or bypass with `with model.disable_adapter():`.
    A missing, corrupt or mismatched adapter raises ModelLoadError.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / ADAPTER_CONFIG).is_file() or not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise ModelLoadError(f"no adapter at {adapter_dir} (expected {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})")
    try:  # read the header before peft touches the model: a corrupt file fails here, model intact
        with safe_open(str(adapter_dir / ADAPTER_WEIGHTS), framework="pt") as f:
            if not list(f.keys()):
                raise ValueError("it holds no tensors")
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise ModelLoadError(f"cannot load adapter {adapter_dir}: {ADAPTER_WEIGHTS} is unreadable ({e})") from None
    try:
        with _quiet():
            model = _load(base_model, adapter_dir, name)
            model.set_adapter(name, inference_mode=True)  # plain set_adapter makes it trainable
    except ModelLoadError:
        raise
    except Exception as e:  # peft, safetensors and torch raise many types for a bad folder
        if isinstance(base_model, PeftModel) and name in base_model.peft_config:
            try:
                base_model.delete_adapter(name)
            except Exception:  # noqa: BLE001 - best effort; the load error below is what matters
                pass
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load adapter {adapter_dir}: {reason[:300]}") from None
    model.eval()
    return model


def _load(base_model, adapter_dir: Path, name: str) -> PeftModel:
    if isinstance(base_model, PeftModel):
        if name in base_model.peft_config:
            raise ModelLoadError(f"an adapter named {name!r} is already loaded")
        base_model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
        return base_model
    return PeftModel.from_pretrained(base_model, str(adapter_dir), adapter_name=name, is_trainable=False)
