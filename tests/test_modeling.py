"""Tokenizer, prompt format, base-model resolution, LoRA adapters and generation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from backend.errors import LimitError, ModelLoadError, UnknownVarietyError
from backend.modeling import (
    VARIETY_TAGS,
    attach_lora,
    format_prompt,
    generate,
    load_adapter,
    load_base,
    resolve_base,
    save_adapter,
    train_tokenizer,
)
from backend.runs import RunConfig

ARABIC = [
    "ذهبتُ إلى السوقِ أمس، واشتريتُ ٣ كتب!",
    "عايز اشرب قهوة دلوقتي 😀 ok?",
    "  بدي  روح عالبيت  ",
    "شلونك؟ زين.\tالحمد لله",
]


def _prompts() -> list[str]:
    sources = ["ذهب الولد إلى السوق", "أريد أن أشرب القهوة الآن", "هذا", "لماذا لا تأتي معنا إلى البيت في الصباح",
               "كان الطقس جميلا جدا اليوم", "عاد", "مع أصدقائه ثم عاد إلى البيت", "الكتاب"]
    targets = ["CAI", "BEI", "RIY", "MSA", "CAI", "BEI", "RIY", "CAI"]
    return [format_prompt(s, "MSA", t) for s, t in zip(sources, targets, strict=True)]


def _perturb(model, seed: int) -> None:
    """LoRA B starts at zero (adapter = identity); random weights make the adapter visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def toy_tokenizer(toy_parallel_corpus):
    texts = [p.source for p in toy_parallel_corpus.pairs] + [p.target for p in toy_parallel_corpus.pairs]
    return train_tokenizer(texts + ARABIC, vocab_size=600)


def test_format_prompt_normalises_names_and_rejects_unknown():
    assert format_prompt("ذهب  الولد\n", "Modern Standard Arabic", "cairo") == "<MSA> ذهب الولد <CAI>"
    assert format_prompt("x", "ENG", "BEI", template="{source_variety}|{target_variety}|{source}") == "ENG|BEI|x"
    with pytest.raises(UnknownVarietyError):
        format_prompt("x", "MSA", "Atlantis")


def test_tokenizer_round_trips_arabic_and_keeps_tags_single(toy_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    toy_tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for tok in (toy_tokenizer, reloaded):
        for text in ARABIC:
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert tok.decode(ids) == text
        for tag in VARIETY_TAGS:
            ids = tok(tag, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1, tag
            assert tok.convert_ids_to_tokens(ids) == [tag]
        assert {"<MSA>", "<ENG>", "<CAI>", "<TUN>", "<EGY>", "<MGR>"} <= set(tok.all_special_tokens)
        assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
        assert tok.padding_side == "left"
        prompt = format_prompt("ذهب الولد", "MSA", "CAI")
        ids = tok(prompt)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[1] == tok.convert_tokens_to_ids("<MSA>")
        assert ids[-1] == tok.convert_tokens_to_ids("<CAI>")
        assert tok.decode(ids, skip_special_tokens=True).strip() == "ذهب الولد"
    assert reloaded(ARABIC[0])["input_ids"] == toy_tokenizer(ARABIC[0])["input_ids"]


def test_resolve_base_rejects_invalid_and_offline_ids(monkeypatch, models_root):
    with pytest.raises(ModelLoadError, match="invalid model id"):
        resolve_base("not a valid id!")
    with pytest.raises(ModelLoadError, match="invalid model id"):
        resolve_base("owner/na..me")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline") as err:
        resolve_base("some-owner/some-model")
    assert "\n" not in str(err.value)
    assert not (models_root / "hub" / "some-owner--some-model").exists()
    with pytest.raises(ModelLoadError, match="no model folder"):
        resolve_base("/definitely/not/here")


def test_resolve_default_missing_tells_how_to_build(monkeypatch, tmp_path):
    from backend import paths

    monkeypatch.setenv("DD_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(paths, "SHIPPED_BASES", tmp_path / "no-shipped-bases")
    with pytest.raises(ModelLoadError, match="python -m backend pretrain"):
        resolve_base("default")


@pytest.mark.slow
def test_load_adapter_missing_or_corrupt(tiny_base, tmp_path):
    model, _ = load_base(str(tiny_base))
    with pytest.raises(ModelLoadError, match="no adapter"):
        load_adapter(model, tmp_path / "nothing", "a")
    peft_model = attach_lora(model, RunConfig(lora_rank=2))
    good = save_adapter(peft_model, tmp_path / "adapter")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "adapter_config.json").write_text((good / "adapter_config.json").read_text())
    (bad / "adapter_model.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    fresh, _ = load_base(str(tiny_base))
    with pytest.raises(ModelLoadError, match="cannot load adapter"):
        load_adapter(fresh, bad, "a")


@pytest.mark.slow
def test_load_base_gives_eval_model_with_variety_tokens(tiny_base):
    model, tok = load_base(tiny_base.name)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert tok.convert_tokens_to_ids("<CAI>") != tok.unk_token_id
    assert model.config.vocab_size == len(tok)


@pytest.mark.slow
def test_attach_lora_trains_only_lora_parameters(tiny_base):
    model, tok = load_base(str(tiny_base))
    peft_model = attach_lora(model, RunConfig(lora_rank=4, lora_targets=["q_proj", "v_proj"]))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    assert all(("q_proj" in n or "v_proj" in n) for n in trainable)
    peft_model.train()
    batch = tok(_prompts()[:2], return_tensors="pt", padding=True)
    out = peft_model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    with_grad = {n for n, p in peft_model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad and with_grad <= set(trainable)


@pytest.mark.slow
def test_attach_lora_unknown_target_is_a_user_error(tiny_base):
    from backend.errors import UserError

    model, _ = load_base(str(tiny_base))
    with pytest.raises(UserError, match="do not fit"):
        attach_lora(model, RunConfig(lora_targets=["c_attn"]))


@pytest.mark.slow
def test_adapter_save_load_gives_identical_generations_and_switches(tiny_base, tmp_path):
    prompts = _prompts()
    model, tok = load_base(str(tiny_base))
    base_out = generate(model, tok, prompts, max_new_tokens=12)
    peft_model = attach_lora(model, RunConfig(lora_rank=4))
    _perturb(peft_model, seed=1)
    out_a = generate(peft_model, tok, prompts, max_new_tokens=12)
    assert out_a != base_out and any(out_a)
    save_adapter(peft_model, tmp_path / "a")
    _perturb(peft_model, seed=2)
    out_b = generate(peft_model, tok, prompts, max_new_tokens=12)
    save_adapter(peft_model, tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folders left

    fresh, tok2 = load_base(str(tiny_base))
    both = load_adapter(fresh, tmp_path / "a", "baseline")
    assert generate(both, tok2, prompts, max_new_tokens=12) == out_a
    both = load_adapter(both, tmp_path / "b", "decoupled")
    assert both.active_adapter == "decoupled"
    assert not any(p.requires_grad for p in both.parameters())
    assert generate(both, tok2, prompts, max_new_tokens=12) == out_b
    both.set_adapter("baseline", inference_mode=True)
    assert generate(both, tok2, prompts, max_new_tokens=12) == out_a
    with both.disable_adapter():
        assert generate(both, tok2, prompts, max_new_tokens=12) == base_out
    with pytest.raises(ModelLoadError, match="already loaded"):
        load_adapter(both, tmp_path / "a", "baseline")


@pytest.mark.slow
def test_generation_is_deterministic_and_batch_size_independent(tiny_base):
    prompts = _prompts()
    model, tok = load_base(str(tiny_base))
    peft_model = attach_lora(model, RunConfig(lora_rank=4))
    for seed in range(10):  # a random adapter whose outputs are long exercises padding and the cache
        _perturb(peft_model, seed=seed)
        one = generate(peft_model, tok, prompts, batch_size=1, max_new_tokens=20)
        if sum(len(o) > 10 for o in one) >= 4:
            break
    eight = generate(peft_model, tok, prompts, batch_size=8, max_new_tokens=20)
    three = generate(peft_model, tok, prompts, batch_size=3, max_new_tokens=20)
    assert one == eight == three
    assert sum(len(o) > 10 for o in one) >= 4
    assert generate(peft_model, tok, prompts[::-1], batch_size=8, max_new_tokens=20) == one[::-1]
    assert all("<" not in o for o in one)  # special tokens stripped

    torch.manual_seed(123)
    state = torch.get_rng_state()
    s1 = generate(peft_model, tok, prompts, do_sample=True, temperature=1.5, seed=7, max_new_tokens=20)
    assert torch.equal(torch.get_rng_state(), state)  # caller's RNG untouched
    s2 = generate(peft_model, tok, prompts, do_sample=True, temperature=1.5, seed=7, max_new_tokens=20)
    s3 = generate(peft_model, tok, prompts, do_sample=True, temperature=1.5, seed=8, max_new_tokens=20)
    assert s1 == s2 and s1 != s3
    beams = generate(peft_model, tok, prompts, num_beams=3, max_new_tokens=20)
    assert beams == generate(peft_model, tok, prompts, num_beams=3, max_new_tokens=20)
    assert generate(peft_model, tok, []) == []


@pytest.mark.slow
def test_generation_rejects_prompts_longer_than_the_model(tiny_base):
    model, tok = load_base(str(tiny_base))
    long = format_prompt(" ".join(["الولد"] * 400), "MSA", "CAI")
    with pytest.raises(LimitError):
        generate(model, tok, [long])


def test_an_unreachable_hub_is_one_line_and_leaves_no_half_written_model(tmp_path):
    # No network here: a closed local port as the hub exercises the real download-failure
    # path (in a fresh process, because huggingface_hub reads HF_ENDPOINT at import).
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "DD_MODELS_DIR": str(tmp_path)}
    code = ("from backend.errors import ModelLoadError\nfrom backend.modeling.base import resolve_base\n"
            "try:\n    resolve_base('owner/model')\nexcept ModelLoadError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("cannot download model owner/model (offline or hub unreachable?)")
    assert len(out.stdout.strip().splitlines()) == 1
    left = list(tmp_path.rglob("*"))
    assert not any(p.is_file() or "partial" in p.name or p.name == "owner--model" for p in left), left
