"""Base models, the tokenizer and prompt format, LoRA adapters, and generation.

    device.py      pick_device, autocast_dtype, weights_dtype
    tokenizer.py   train_tokenizer, VARIETY_TAGS (prompt formats: backend/prompts.py)
    base.py        resolve_base, load_base (embedded default, local folder, hub id; dtype, quantize)
    adapters.py    attach_lora, save_adapter, load_adapter (peft, safetensors)
    targets.py     resolve_targets: which layers LoRA wraps, for any architecture
    generation.py  generate (batched, KV cache, greedy / beam / sampling)
    atomic.py      atomic_dir: folders that appear complete or not at all

The from-scratch pretraining of the default base lives in `backend/pretrain.py`.
"""

from backend.modeling.adapters import attach_lora, load_adapter, save_adapter
from backend.modeling.atomic import atomic_dir
from backend.modeling.base import DEFAULT_BASE, is_hub_id, load_base, resolve_base
from backend.modeling.device import autocast_dtype, pick_device
from backend.modeling.generation import generate
from backend.modeling.tokenizer import PROMPT_FORMAT, VARIETY_TAGS, format_prompt, train_tokenizer

__all__ = [
    "DEFAULT_BASE", "PROMPT_FORMAT", "VARIETY_TAGS", "atomic_dir", "attach_lora", "autocast_dtype",
    "format_prompt", "generate", "is_hub_id", "load_adapter", "load_base", "pick_device",
    "resolve_base", "save_adapter", "train_tokenizer",
]
