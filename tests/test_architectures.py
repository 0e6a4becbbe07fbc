"""Any causal LM architecture: tiny random models of 15 families through the real pipeline.

Each model is built from its transformers config class with tiny sizes, saved with
`save_pretrained` next to the shipped base's tokenizer, trained baseline and decoupled for two
steps by `backend.training.train` with the default LoRA targets, reloaded and used to
generate. The adapters must sit on attention and MLP of every block, and adapter_config.json
must name exactly what was adapted. Also here: LoRA target resolution and its errors, and the
loading options (dtype, quantize, gradient checkpointing).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from peft.tuners.lora import LoraLayer

from backend.errors import UserError
from backend.modeling import attach_lora, generate, load_adapter, load_base
from backend.modeling.base import checkpointing, quantize_problems
from backend.modeling.targets import adapted_modules, linear_layers, resolve_targets
from backend.runs import RunConfig
from backend.training import train

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "base" / "default"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

LLAMA_LIKE = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
FUSED = {"query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"}
_DECODER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=128)
# name -> (config class, its tiny settings, the leaf names default resolution must adapt)
ARCHITECTURES = {
    "llama": ("LlamaConfig", _DECODER, LLAMA_LIKE),
    "qwen2": ("Qwen2Config", _DECODER, LLAMA_LIKE),
    "qwen3": ("Qwen3Config", {**_DECODER, "head_dim": 8}, LLAMA_LIKE),
    "mistral": ("MistralConfig", _DECODER, LLAMA_LIKE),
    "gemma2": ("Gemma2Config", {**_DECODER, "head_dim": 8}, LLAMA_LIKE),
    "gemma3": ("Gemma3TextConfig", {**_DECODER, "head_dim": 8}, LLAMA_LIKE),
    "olmo2": ("Olmo2Config", _DECODER, LLAMA_LIKE),
    "stablelm": ("StableLmConfig", _DECODER, LLAMA_LIKE),
    "cohere": ("CohereConfig", _DECODER, LLAMA_LIKE),
    "granite": ("GraniteConfig", _DECODER, LLAMA_LIKE),
    "phi3": ("Phi3Config", _DECODER, {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}),
    "gpt2": ("GPT2Config", dict(n_embd=32, n_layer=2, n_head=4, n_positions=128), {"c_attn", "c_proj", "c_fc"}),
    "gpt_neox": ("GPTNeoXConfig", dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=128), FUSED),
    "falcon": ("FalconConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4), FUSED),
    "bloom": ("BloomConfig", dict(hidden_size=32, n_layer=2, n_head=4), FUSED),
}
ATTENTION = ("self_attn", "attn", "attention", "self_attention")


def tiny_model_folder(arch: str, root: Path) -> Path:
    """A randomly initialised `arch` saved like a hub download: weights, config, tokenizer."""
    config_class, sizes, _ = ARCHITECTURES[arch]
    folder = root / arch
    if folder.is_dir():
        return folder
    vocab = json.loads((SHIPPED / "config.json").read_text())["vocab_size"]
    config = getattr(transformers, config_class)(vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                                 **sizes)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(SHIPPED / name, folder / name)
    return folder


@pytest.fixture(autouse=True)
def own_models_root(tmp_path, monkeypatch) -> None:
    """The zoo's runs in a models root of their own: random tiny models must not become the
    session's newest run pairs, which the app's pages open first."""
    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path / "models"))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zoo")


def _blocks_with_lora(model) -> list[tuple[str, str]]:
    """(block index, 'attention' or 'mlp') of every adapted module."""
    found = set()
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            parts = name.split(".")
            i = next(k for k, p in enumerate(parts) if p.isdigit())
            part = "mlp" if parts[i + 1] == "mlp" else "attention" if parts[i + 1] in ATTENTION else parts[i + 1]
            found.add((parts[i], part))
    return sorted(found)


def _config(base: Path, method: str) -> RunConfig:
    return RunConfig(method=method, source="offline:size=60", dialects=["CAI"], base=str(base), steps=2,
                     batch_size=4, max_length=24, max_train_pairs=16, probe_every=1, probe_batch=8, probe_steps=2,
                     lam_warmup=1, lora_rank=4, save_every=1000, learning_rate=1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_trains_saves_reloads_and_generates(arch, zoo):
    folder = tiny_model_folder(arch, zoo)
    expected = ARCHITECTURES[arch][2]
    runs = {m: train(_config(folder, m)) for m in ("baseline", "decoupled")}
    for method, run in runs.items():
        assert run.state()["state"] == "finished", (method, run.state())
        assert [r["step"] for r in run.metrics()] == [1, 2]
        saved = json.loads((run.adapter_dir / "adapter_config.json").read_text())
        assert set(saved["target_modules"]) == expected
    assert any(r["penalty"] > 0 for r in runs["decoupled"].metrics())

    model, tok = load_base(str(folder), device="cpu")
    model = load_adapter(model, runs["decoupled"].adapter_dir, "decoupled")
    assert set(adapted_modules(model)) == expected
    assert {part for _, part in _blocks_with_lora(model)} == {"attention", "mlp"}
    assert {block for block, _ in _blocks_with_lora(model)} == {"0", "1"}
    trained = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(p.abs().sum() > 0 for p in trained)  # the trained weights came back, not a fresh adapter
    out = generate(model, tok, ["<MSA> ذهبت إلى السوق <CAI>", "<MSA> أين المحطة <CAI>"], max_new_tokens=4)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)


# --- LoRA targets ------------------------------------------------------------------------------

def _tiny(arch: str, zoo: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(tiny_model_folder(arch, zoo))


def test_default_targets_on_the_shipped_base_are_the_earlier_seven():
    model, _ = load_base("default", device="cpu")
    assert resolve_targets(model, None) == sorted(LLAMA_LIKE)  # earlier runs stay reproducible
    assert "lm_head" in linear_layers(model)  # a linear layer, but never adapted by default


def test_explicit_targets_that_match_only_partly_name_what_matched(zoo):
    model = _tiny("phi3", zoo)
    with pytest.raises(UserError) as e:
        resolve_targets(model, ["q_proj", "k_proj", "v_proj", "o_proj"])
    message = str(e.value)
    assert "q_proj, k_proj, v_proj do not fit" in message and "matched only o_proj" in message
    assert "qkv_proj (Linear)" in message and "gate_up_proj (Linear)" in message
    assert resolve_targets(model, ["qkv_proj", "o_proj"]) == ["qkv_proj", "o_proj"]


@pytest.mark.parametrize("arch, layer", [("gpt2", "c_attn (Conv1D)"), ("falcon", "query_key_value (FalconLinear)")])
def test_the_hint_lists_conv1d_and_the_models_own_linear_types(arch, layer, zoo):
    model = _tiny(arch, zoo)
    with pytest.raises(UserError, match="matched nothing") as e:
        attach_lora(model, RunConfig(lora_targets=["q_proj", "v_proj"]))
    assert layer in str(e.value)
    assert not any(isinstance(m, LoraLayer) for m in model.modules())  # the model was left as it was


def test_gpt2_adapter_is_transposed_like_its_conv1d_weights(zoo):
    peft_model = attach_lora(_tiny("gpt2", zoo), RunConfig(lora_rank=2))
    assert peft_model.peft_config["default"].fan_in_fan_out is True


# --- loading options ---------------------------------------------------------------------------

def test_dtype_auto_is_fp32_on_cpu_and_bf16_loads_bf16():
    auto, _ = load_base("default", device="cpu")
    assert {p.dtype for p in auto.parameters()} == {torch.float32}
    bf16, _ = load_base("default", device="cpu", dtype="bf16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    with pytest.raises(UserError, match="unknown dtype 'fp8'"):
        load_base("default", device="cpu", dtype="fp8")


def test_quantize_where_it_cannot_run_is_a_clear_user_error():
    import importlib.util

    with pytest.raises(UserError) as e:
        load_base("default", device="cpu", quantize="4bit")
    message = str(e.value)
    assert message.startswith("4bit loading needs a CUDA GPU (this process runs on cpu)")
    assert ("requirements-gpu.txt" in message) == (importlib.util.find_spec("bitsandbytes") is None)
    assert "/" not in message.replace("requirements-gpu.txt", "")  # no server paths
    with pytest.raises(UserError, match="unknown quantize '3bit'"):
        load_base("default", device="cpu", quantize="3bit")
    assert quantize_problems("8bit", "cpu")


def test_gradient_checkpointing_gives_the_same_gradients():
    def lora_grads(on: bool) -> dict[str, torch.Tensor]:
        model, tok = load_base("default", device="cpu", gradient_checkpointing=on)
        assert checkpointing(model) == on
        torch.manual_seed(0)
        peft_model = attach_lora(model, RunConfig(lora_rank=4, lora_dropout=0.0))
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:  # non-zero B, so that A gets a gradient too
                torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(len(name)))
        peft_model.train()
        batch = tok(["<MSA> ذهبت إلى السوق <CAI> مشيت عالسوق"], return_tensors="pt")
        peft_model(**batch, labels=batch["input_ids"]).loss.backward()
        return {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.grad is not None}

    plain, checkpointed = lora_grads(False), lora_grads(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], rtol=1e-4, atol=1e-6)
