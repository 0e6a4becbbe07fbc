"""The modules whose outputs are `hidden_states[l]`, and forward hooks that capture them.

"Layer l" (1..n) everywhere in the project is `hidden_states[l]` of `output_hidden_states`:
the output of decoder block l - 1 for l < n, and for l = n the final norm's output
(transformers returns the normed state there). Asking the model for every hidden state
keeps n + 1 full-size tensors alive for the backward pass although the penalty reads three;
hooks on the chosen modules keep exactly those.

Architectures: the blocks live at `model.layers` (Llama, Qwen2/3, Mistral, Gemma2/3,
OLMo2, StableLm, Cohere, Granite, Phi-3), `transformer.h` (GPT-2, Falcon, Bloom),
`gpt_neox.layers` (GPT-NeoX) or `model.decoder.layers` (OPT); any other model is searched
for a ModuleList of `num_hidden_layers` blocks. DDP and peft wrappers are looked through.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from torch import Tensor, nn

from backend.errors import UserError

_BLOCK_PATHS = ("model.layers", "model.language_model.layers", "transformer.h", "gpt_neox.layers",
                "model.decoder.layers", "layers", "h", "decoder.layers", "language_model.layers")
_FINAL_NORMS = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "final_norm")


class _Stop(Exception):
    """Raised by the last capture hook to skip the rest of a forward whose output is unused."""


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel wrappers (peft's wrapper stays)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside DDP / DataParallel / peft wrappers; peft's LoRA layers
    are injected in place, so its forward is still the adapted model's."""
    model = unwrap_parallel(model)
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def _attr(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            return None
    return obj


def _count(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    n = getattr(config, "num_hidden_layers", None)
    return int(n) if isinstance(n, int) else None


def decoder_blocks(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """(the module holding the blocks, the blocks) of a causal LM, through any wrapper."""
    inner = unwrap(model)
    n = _count(inner)
    for path in _BLOCK_PATHS:
        blocks = _attr(inner, path)
        if isinstance(blocks, nn.ModuleList) and len(blocks) > 0 and (n is None or len(blocks) == n):
            parent = _attr(inner, path.rpartition(".")[0]) if "." in path else inner
            return parent, blocks
    for _, module in inner.named_modules():
        for child in module.children():
            if isinstance(child, nn.ModuleList) and len(child) > 0 and (n is None or len(child) == n):
                return module, child
    raise UserError(f"cannot find the decoder layers of {type(inner).__name__}")


def layer_modules(model: nn.Module) -> dict[int, nn.Module]:
    """hidden_states index l (1..n) -> the module whose output is that state: decoder block
    l - 1 for l < n, the final norm for l = n (the last block when there is none)."""
    parent, blocks = decoder_blocks(model)
    n = len(blocks)
    out: dict[int, nn.Module] = {i + 1: blocks[i] for i in range(n)}
    norm = next((getattr(parent, a) for a in _FINAL_NORMS if isinstance(getattr(parent, a, None), nn.Module)), None)
    if norm is not None:
        out[n] = norm
    return out


def n_layers(model: nn.Module) -> int:
    return len(decoder_blocks(model)[1])


def check_layers(model: nn.Module, layers: Sequence[int]) -> dict[int, nn.Module]:
    """The modules of `layers`, or a UserError naming the ones this model does not have."""
    modules = layer_modules(model)
    bad = [layer for layer in layers if layer not in modules]
    if bad:
        raise UserError(f"layers {bad} do not exist; this model has layers 1..{len(modules)}")
    return modules


@contextlib.contextmanager
def capture(model: nn.Module, layers: Sequence[int], stop: bool = False) -> Iterator[dict[int, Tensor]]:
    """Inside the block, every forward of `model` fills the yielded dict with
    `hidden_states[l]` for each l in `layers` (the tensors themselves, still in the graph).

    `stop=True` ends the forward as soon as the deepest chosen layer has run, for callers
    that only want the states (call it as `run_to_layers`); the hooks are removed on
    leaving the block, also when it raises, so they never reach another forward."""
    wanted = list(dict.fromkeys(layers))
    modules = check_layers(model, wanted)
    states: dict[int, Tensor] = {}
    last = max(wanted) if wanted else None
    handles = []

    def hook_for(layer: int):
        def fn(module: nn.Module, args: Any, output: Any) -> None:
            states[layer] = output[0] if isinstance(output, tuple) else output
            if stop and layer == last and len(states) == len(wanted):
                raise _Stop

        return fn

    try:
        for layer in wanted:
            handles.append(modules[layer].register_forward_hook(hook_for(layer)))
        yield states
    finally:
        for handle in handles:
            handle.remove()


def run_to_layers(model: nn.Module, layers: Sequence[int], **inputs: Any) -> dict[int, Tensor]:
    """`hidden_states[l]` for `layers` from one forward that stops after the deepest of them
    (no later blocks, no LM head: for a large vocabulary the head alone is a big share)."""
    with capture(model, layers, stop=True) as states:
        try:
            model(**inputs)
        except _Stop:
            pass
    return dict(states)
