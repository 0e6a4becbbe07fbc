"""Presets for real LLMs and an estimate of the GPU memory a run needs, before it starts.

A user choosing between a 0.5B model in bf16 and a 7B one in 4 bits wants to know whether it
fits their GPU before downloading 15 GB. The estimate counts what a LoRA run holds on the GPU
at its peak (in bytes, as `torch.cuda.max_memory_allocated` would count them; the CUDA context,
about 0.5 GB, comes on top):

- weights: the base's parameters at the load dtype (bf16/fp16: 2 bytes, fp32: 4); with
  `quantize`, the decoder's linear layers at 4 bits (+ block constants, about 4.13 bits) or
  8 bits, embeddings, norms and the output head stay at the compute dtype (bitsandbytes
  skips them);
- LoRA: r x (in + out) per adapted linear layer, kept in fp32 by peft; each trainable value
  costs 16 bytes: itself (the fp32 master), its gradient and Adam's two fp32 moments;
- activations kept for the backward pass, per token and decoder layer, in the compute dtype:
  6 H + 2 KV + 4 I values (norm inputs and outputs, q/k/v, the attention output, gate, up,
  their product; memory-efficient attention keeps no s x s matrix), plus one input copy per
  adapted layer (LoRA's dropout). With gradient checkpointing only each layer's input (H)
  is kept, plus one layer recomputed at a time. Plus the logits: V values per token in the
  compute dtype, an fp32 copy for the loss and its gradient (10 bytes per value in bf16);
- the probe: the chosen layers' hidden states for the batch (compute dtype) and the held-out
  MSA batch it reads each update (fp32).

It is an estimate (fragmentation, temporary buffers and the kernels' workspaces vary); it
answers "does it fit" within a few tens of percent, not to the megabyte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend import paths
from backend.errors import UserError
from backend.runs import RunConfig

GIB = 1024**3
CUDA_CONTEXT_BYTES = 0.5 * GIB  # outside max_memory_allocated; said, never added


@dataclass(frozen=True)
class Shape:
    """The architecture numbers the estimate needs (a Llama-like decoder)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = True
    qkv_bias: bool = False
    head_dim: int | None = None

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer in one decoder block, by its usual module name."""
        q, kv = self.heads * self.hd, self.kv_heads * self.hd
        h, i = self.hidden, self.intermediate
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def linear_params(self) -> int:
        """Parameters in the decoder blocks' linear layers (what 4/8-bit loading quantises)."""
        per_layer = sum(a * b for a, b in self.linears().values())
        if self.qkv_bias:
            per_layer += self.heads * self.hd + 2 * self.kv_heads * self.hd
        return per_layer * self.layers

    def params(self) -> int:
        """Every parameter: embeddings, blocks (linears + 2 RMS norms), final norm, head."""
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + self.linear_params() + self.layers * 2 * self.hidden + self.hidden


def shape_from_config(cfg: dict[str, Any]) -> Shape:
    """A Shape from a Hugging Face config.json (Llama, Qwen2, Mistral and alike)."""
    heads = int(cfg["num_attention_heads"])
    return Shape(layers=int(cfg["num_hidden_layers"]), hidden=int(cfg["hidden_size"]),
                 intermediate=int(cfg["intermediate_size"]), heads=heads,
                 kv_heads=int(cfg.get("num_key_value_heads") or heads), vocab=int(cfg["vocab_size"]),
                 tied=bool(cfg.get("tie_word_embeddings", True)),
                 qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
                 head_dim=cfg.get("head_dim"))


@dataclass(frozen=True)
class Preset:
    """A real model to fine-tune, with the numbers of its published config.json and the
    settings suggested for one 24 GB GPU."""

    name: str
    hub_id: str
    description: str
    shape: Shape
    published_params: int  # as the model card states it (checked against Shape.params)
    settings: dict[str, Any] = field(default_factory=dict)


PRESETS = {p.name: p for p in (
    Preset("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5 0.5B Instruct (multilingual, Arabic included)",
           Shape(layers=24, hidden=896, intermediate=4864, heads=14, kv_heads=2, vocab=151936, qkv_bias=True),
           494_032_768, {"dtype": "auto", "batch_size": 16, "max_length": 192}),
    Preset("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen2.5 1.5B Instruct (multilingual, Arabic included)",
           Shape(layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, vocab=151936, qkv_bias=True),
           1_543_714_304, {"dtype": "auto", "batch_size": 16, "max_length": 192}),
    Preset("allam-7b", "ALLaM-AI/ALLaM-7B-Instruct-preview", "ALLaM 7B Instruct (Arabic and English, SDAIA)",
           Shape(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, vocab=64000, tied=False),
           7_000_559_616, {"dtype": "auto", "quantize": "4bit", "batch_size": 8, "max_length": 192,
                           "gradient_checkpointing": True}),
)}


def preset_for(base: str) -> Preset | None:
    """The preset named `base` or whose hub id is `base`."""
    return PRESETS.get(base) or next((p for p in PRESETS.values() if p.hub_id == base), None)


def model_shape(base: str) -> tuple[Shape, str] | None:
    """(shape, where the numbers come from) for a preset, a hub id of a preset, a local base
    name or folder with a config.json; None when it cannot be known offline."""
    preset = preset_for(base)
    if preset is not None:
        return preset.shape, f"the stored numbers of {preset.hub_id}"
    if Path(base).is_absolute():
        folder = Path(base)
    elif "/" not in base and "\\" not in base and base.strip():
        folder = paths.base_dir(base)
    else:
        return None  # a hub id: its config is not here offline
    if not (folder / "config.json").is_file():
        return None
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return shape_from_config(cfg), "the model's config.json"
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Estimate:
    """GPU bytes by part; `total` is their sum (the CUDA context not included)."""

    weights: int
    lora: int
    optimizer: int
    activations: int
    probe: int
    lora_params: int
    basis: str

    @property
    def total(self) -> int:
        return self.weights + self.lora + self.optimizer + self.activations + self.probe

    def summary(self) -> str:
        parts = (("weights", self.weights), ("LoRA", self.lora), ("gradients + Adam", self.optimizer),
                 ("activations", self.activations), ("probe", self.probe))
        return (f"about {gib(self.total)} of GPU memory (" + ", ".join(f"{k} {gib(v)}" for k, v in parts)
                + f"; plus about {gib(CUDA_CONTEXT_BYTES)} for the CUDA context)")


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GiB" if n >= 0.1 * GIB else f"{n / 1024**2:.0f} MiB"


def _adapted(shape: Shape, targets: list[str] | None) -> dict[str, tuple[int, int]]:
    """The block's linear layers a LoRA with `targets` wraps; unknown names or None: all
    of them (what per-architecture resolution picks: attention and MLP)."""
    linears = shape.linears()
    chosen = {k: v for k, v in linears.items() if targets and k in targets}
    return chosen or linears


def estimate(config: RunConfig, shape: Shape, basis: str = "") -> Estimate:
    """The GPU memory `config` needs on a model of `shape` (see the module docstring)."""
    act_bytes = 4 if config.dtype == "fp32" else 2  # auto: bf16 on a GPU
    other = shape.params() - shape.linear_params()
    if config.quantize == "4bit":
        weights = shape.linear_params() * 4.127 / 8 + other * act_bytes
    elif config.quantize == "8bit":
        weights = shape.linear_params() * 1.0 + other * act_bytes
    else:
        weights = shape.params() * act_bytes
    adapted = _adapted(shape, config.lora_targets)
    lora_params = config.lora_rank * sum(a + b for a, b in adapted.values()) * shape.layers
    tokens = config.batch_size * config.max_length
    h, i, kv = shape.hidden, shape.intermediate, shape.kv_heads * shape.hd
    per_layer = 6 * h + 2 * kv + 4 * i + sum(a for a, _ in adapted.values())
    if config.gradient_checkpointing:
        kept = tokens * (h * shape.layers + per_layer)
    else:
        kept = tokens * per_layer * shape.layers
    logits = tokens * shape.vocab * (act_bytes + 8)
    n_layers = len(config.layers) if config.layers else min(3, shape.layers)
    probe = tokens * h * n_layers * act_bytes + config.probe_batch * config.max_length * h * n_layers * 4
    return Estimate(weights=int(weights), lora=lora_params * 4, optimizer=lora_params * 12,
                    activations=int(kept * act_bytes + logits), probe=int(probe), lora_params=lora_params,
                    basis=basis)


def estimate_for(config: RunConfig) -> Estimate | None:
    """The estimate for `config.base` (a resolved base spec), or None when its architecture
    cannot be known offline (a hub id that is not a preset, not downloaded)."""
    found = model_shape(config.base)
    return None if found is None else estimate(config, found[0], found[1])


def apply_preset(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Run settings for preset `name`: its hub id as the base and its suggested settings,
    under what the user gave explicitly."""
    preset = PRESETS.get(name)
    if preset is None:
        raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return {"base": preset.hub_id, **preset.settings, **given}
