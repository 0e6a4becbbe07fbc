"""backend.modeling.layers: hooks see exactly `output_hidden_states[l]`, on every
architecture the project supports, and never outlive their block."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from backend import paths
from backend.errors import UserError
from backend.modeling.layers import capture, layer_modules, n_layers, run_to_layers

ARCHITECTURES = ["llama", "qwen2", "qwen3", "mistral", "gemma2", "gemma3_text", "olmo2", "stablelm", "cohere",
                 "granite", "gpt2", "gpt_neox", "falcon", "bloom", "phi3"]
NO_HEAD_DIM = {"gpt2", "gpt_neox", "falcon", "bloom"}  # their configs derive it
SHIPPED = paths.SHIPPED_BASES / "default"


def tiny(model_type: str, n: int = 3):
    extra = {} if model_type in NO_HEAD_DIM else {"head_dim": 8}
    config = AutoConfig.for_model(model_type, hidden_size=32, num_hidden_layers=n, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=64, vocab_size=128,
                                  max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                  **extra)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def _inputs(batch: int = 2, length: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 128, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[-1, length - 2:] = 0  # right padding, as training has
    return {"input_ids": ids, "attention_mask": mask}


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_hooks_capture_exactly_the_hidden_states(model_type):
    model = tiny(model_type)
    inputs = _inputs()
    assert n_layers(model) == 3
    with torch.no_grad():
        ref = model(**inputs, output_hidden_states=True).hidden_states
        before = _hooks(model)  # transformers' own recording hooks stay installed
        with capture(model, [1, 2, 3]) as states:
            model(**inputs)
        stopped = run_to_layers(model, [2, 1], **inputs)
    for layer in (1, 2, 3):
        assert torch.equal(states[layer], ref[layer]), (model_type, layer)
    assert set(stopped) == {1, 2} and all(torch.equal(stopped[x], ref[x]) for x in (1, 2))
    assert _hooks(model) == before


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="no shipped base model")
def test_on_the_shipped_base_through_lora_the_layer_numbers_are_unchanged():
    """Layer l is hidden_states[l] (0 = embeddings), the convention every run folder uses."""
    from backend.modeling import attach_lora, load_base
    from backend.runs import RunConfig

    model, _ = load_base(str(SHIPPED), device="cpu")
    model = attach_lora(model, RunConfig(base=str(SHIPPED)))
    model.eval()
    n = model.config.num_hidden_layers
    inputs = _inputs(3, 11)
    inputs["input_ids"] = inputs["input_ids"] % model.config.vocab_size
    with torch.no_grad():
        ref = model(**inputs, output_hidden_states=True).hidden_states
        states = run_to_layers(model, list(range(1, n + 1)), **inputs)
    assert len(ref) == n + 1 and sorted(states) == list(range(1, n + 1))
    for layer in range(1, n + 1):
        assert torch.equal(states[layer], ref[layer]), layer


def test_stopping_skips_the_rest_of_the_model():
    model = tiny("llama", n=4)
    calls = []
    later = [model.model.layers[3].register_forward_hook(lambda *_: calls.append("block 4")),
             model.lm_head.register_forward_hook(lambda *_: calls.append("head"))]
    with torch.no_grad():
        run_to_layers(model, [2, 3], **_inputs())
        assert calls == []
        model(**_inputs())
    assert calls == ["block 4", "head"]
    for h in later:
        h.remove()


def test_hooks_are_removed_when_the_forward_raises():
    model = tiny("qwen2")
    before = _hooks(model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, [1, 3]):
            raise RuntimeError("boom")
    assert _hooks(model) == before
    with capture(model, [1]) as states:
        pass
    with torch.no_grad():
        model(**_inputs())
    assert states == {}  # a forward after the block is not captured


def test_unknown_layers_are_a_user_error():
    model = tiny("gpt2")
    with pytest.raises(UserError, match=r"layers \[0, 4\] do not exist; this model has layers 1..3"):
        with capture(model, [0, 2, 4]):
            pass
    with pytest.raises(UserError, match="cannot find the decoder layers of Linear"):
        layer_modules(torch.nn.Linear(2, 2))


def test_the_penalty_gets_gradients_through_hooks_under_gradient_checkpointing():
    """Checkpointing reruns each block in the backward pass; the captured states must still
    carry the penalty's gradient to the LoRA weights, and the rerun must not hit the hooks."""
    from peft import LoraConfig, get_peft_model

    model = tiny("llama", n=3)
    model.gradient_checkpointing_enable()
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    model.enable_input_require_grads()
    model.train()
    before = _hooks(model)
    with capture(model, [2]) as states:
        model(**_inputs())
    h = states[2]
    assert h.requires_grad
    # LoRA's B starts at zero, so only B receives a gradient on the first backward.
    (h.pow(2).mean()).backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n and "layers.0." in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert _hooks(model) == before
