"""Property-based fuzzing of what a user types into Compare (and `generate`): any text and
any target-variety string either passes, cleaned, or raises one of the project's own
errors; never anything else."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import safety, varieties
from backend.errors import UserError

# Arabic letters and marks, Latin, digits, punctuation, controls, odd spaces, emoji.
_ALPHABET = st.one_of(
    st.characters(min_codepoint=0x0600, max_codepoint=0x06FF),
    st.characters(min_codepoint=0, max_codepoint=0x7F),
    st.sampled_from(["\u200f", "\u200b", "\u2028", "\ufeff", "\u0640", "\U0001F600", "\ud800", "\x00"]),
    st.characters(),
)
TEXTS = st.text(_ALPHABET, max_size=700)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(TEXTS)
def test_check_text_returns_clean_text_or_a_limit_error(text):
    try:
        out = safety.check_text(text)
    except UserError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert out == out.strip() and 0 < len(out) <= safety.limit("text_chars")
    out.encode("utf-8")  # no lone surrogates reach a tokenizer
    assert not any(ord(c) < 32 and c not in "\n\t" for c in out)


@FAST
@given(TEXTS, st.text(max_size=30))
def test_compare_input_raises_only_user_errors(text, target):
    from backend.compare import _check_source

    try:
        source = _check_source(text)
        code = varieties.code(target)
    except UserError as e:
        assert str(e)
        return
    assert source and code


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_base):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_base))


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, target=st.sampled_from(["CAI", "BEI", "RIY", "MSA", "tunis", "Rabat"]))
def test_accepted_compare_input_always_makes_a_prompt_the_tokenizer_reads(tiny_tokenizer, text, target):
    from backend.modeling import format_prompt

    try:
        source = safety.check_text(text)
    except UserError:
        return
    prompt = format_prompt(source, "MSA", varieties.code(target))
    ids = tiny_tokenizer(prompt)["input_ids"]
    assert ids and all(isinstance(i, int) for i in ids)
