"""Prompt formats: the embedded base keeps its tags, chat models are asked in words."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from backend.errors import UserError
from backend.examples import IGNORE, encode
from backend.modeling import format_prompt
from backend.prompts import TAGS, Prompter, prompt_ids
from backend.runs import RunConfig
from backend.training import prepare_data

SHIPPED = Path(__file__).resolve().parent.parent / "models" / "base" / "default"
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture
def tok():
    return AutoTokenizer.from_pretrained(SHIPPED)


@pytest.fixture
def chat_tok(tok):
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_the_embedded_base_keeps_its_variety_tags(tok):
    assert RunConfig().prompt_format == "auto"
    for fmt in ("auto", "tags", TAGS, None):
        assert Prompter(tok, fmt)("ذهبت  إلى البيت", "MSA", "cairo") == "<MSA> ذهبت إلى البيت <CAI>"
    # the tag template that older run configs stored works exactly as before, and so do custom ones
    old = RunConfig.from_dict({"prompt_format": "<{source_variety}> {source} <{target_variety}>"})
    assert Prompter(tok, old.prompt_format)("ذهبت", "MSA", "BEI") == format_prompt("ذهبت", "MSA", "BEI")
    assert Prompter(tok, "{source} => {target_variety}")("ذهبت", "MSA", "BEI") == "ذهبت => BEI"


def test_tag_prompts_tokenize_as_before(tok):
    text = "<MSA> ذهبت إلى البيت <CAI>"
    assert prompt_ids(tok, [text]) == [[tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]]


def test_a_chat_model_is_asked_in_words_through_its_template(chat_tok):
    prompter = Prompter(chat_tok, "auto")
    assert prompter.kind == "chat"
    text = prompter("ذهبت إلى البيت", "MSA", "CAI")
    assert text.startswith("<s><|user|>Rewrite this Modern Standard Arabic sentence in the Arabic of Cairo (Egypt).")
    assert "\n\nذهبت إلى البيت\n" in text and text.endswith("<|assistant|>")
    ids = prompt_ids(chat_tok, [text])[0]
    assert ids[0] == chat_tok.bos_token_id and ids[1] != chat_tok.bos_token_id  # the template's BOS, once
    assert Prompter(chat_tok, "tags")("ذهبت", "MSA", "CAI") == "<MSA> ذهبت <CAI>"  # overridable


def test_bad_formats_are_user_errors(tok):
    with pytest.raises(UserError, match="needs a tokenizer with a chat template"):
        Prompter(tok, "chat")
    with pytest.raises(UserError, match="unknown prompt format 'instruct'"):
        Prompter(tok, "instruct")
    with pytest.raises(UserError, match="unknown prompt format 'instruct'"):
        RunConfig(prompt_format="instruct")  # refused before any run folder is made
    with pytest.raises(UserError, match="not a tag template"):
        format_prompt("ذهبت", "MSA", "CAI", "auto")


def test_an_overlong_prompt_keeps_its_end(tok):
    long = format_prompt(" ".join(["الولد"] * 60), "MSA", "CAI")
    item = encode(tok, [long], ["ذهبت"], max_length=24)[0]
    prompt = [t for t, label in zip(item["input_ids"], item["labels"]) if label == IGNORE]
    assert len(prompt) == 12
    assert prompt[0] == tok.bos_token_id and prompt[-1] == tok.convert_tokens_to_ids("<CAI>")


def test_training_data_of_a_chat_model_uses_the_chat_format(chat_tok):
    config = RunConfig(source="offline:size=60", dialects=["CAI"], max_train_pairs=8, max_length=128)
    data = prepare_data(config, chat_tok)
    assert all(p.endswith("<|assistant|>") for p in data.probe_prompts + data.dialect_prompts)
    assert "in Modern Standard Arabic" in data.probe_prompts[0]
