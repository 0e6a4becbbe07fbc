"""Which modules a LoRA adapter wraps, for any causal LM architecture.

Module names differ per family (Llama's q_proj..down_proj, GPT-2's c_attn/c_fc/c_proj,
Falcon's query_key_value/dense_h_to_4h, Phi-3's qkv_proj/gate_up_proj), and so do the layer
types: `nn.Linear`, transformers' `Conv1D` (GPT-2) and models' own Linear subclasses
(`FalconLinear`). The default is therefore found on the loaded model: every linear-like
layer except the output head, which is peft's "all-linear" and on a Llama-style model gives
exactly q, k, v, o, gate, up and down projections. An explicit list must match entirely: a
name that matches nothing is an error, not a silent half-adapted model.
"""

from __future__ import annotations

from collections.abc import Sequence

from peft.tuners.lora import LoraLayer
from torch import nn
from transformers.pytorch_utils import Conv1D

from backend.errors import UserError


def _linear_like(module: nn.Module) -> bool:
    return isinstance(module, (nn.Linear, Conv1D))


def linear_layers(model: nn.Module) -> dict[str, str]:
    """Leaf name -> layer type of every linear-like layer, head included: `{"c_attn": "Conv1D", ...}`."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if name and _linear_like(module):
            found.setdefault(name.rsplit(".", 1)[-1], type(module).__name__)
    return dict(sorted(found.items()))


def _head(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_output_embeddings", None)
    return get() if callable(get) else None


def _matches(name: str, target: str) -> bool:
    """peft's rule for a list of names: the full module name, or its dotted suffix."""
    return name == target or name.endswith("." + target)


def resolve_targets(model: nn.Module, targets: Sequence[str] | None) -> list[str]:
    """The leaf names the adapter wraps: `targets` checked against `model`, or (None) all of its
    linear-like layers but the output head. Every returned name matches a module."""
    head = _head(model)
    names = [n for n, m in model.named_modules() if n and m is not head and _linear_like(m)]
    if targets is None:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        if not leaves:
            raise UserError("this model has no linear layers besides its output head for LoRA to adapt")
        return leaves
    targets = [t.strip() for t in targets if t.strip()]
    if not targets:
        raise UserError("no LoRA targets given; leave the setting empty to adapt every linear layer")
    modules = [n for n, _ in model.named_modules() if n]
    matched = [t for t in targets if any(_matches(n, t) for n in modules)]
    missing = [t for t in targets if t not in matched]
    if missing:
        layers = ", ".join(f"{n} ({kind})" for n, kind in linear_layers(model).items())
        got = f"matched only {', '.join(matched)}; " if matched else "matched nothing; "
        raise UserError(f"LoRA targets {', '.join(missing)} do not fit this model ({got}"
                        f"its linear layers are: {layers})")
    return targets


def adapted_modules(model: nn.Module) -> list[str]:
    """Leaf names of the modules that really carry a LoRA adapter (after get_peft_model)."""
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, LoraLayer)})
