"""The from-scratch tokenizer, the prompt format, and how a training pair becomes tokens.

A prompt is `<MSA> source <CAI>`: the source variety tag, the source text, the target
variety tag; the model continues with the target sentence and EOS. Every variety code in the
registry is one special token (MSA, ENG, the 25 cities, the coarse groups), so a prompt costs
two tokens of overhead and the tags survive `save_pretrained` / `from_pretrained`. A tag
swallows the space before it but not the one after it, so every word, the first of a source
or a target included, is tokenized in its space-prefixed form, as in pretraining (which feeds
each sentence with a leading space) and in `backend.examples.encode` (which prefixes the
target with one).

Hub tokenizers do not have these tokens; for them the tags are ordinary text, which works
the same way at a few more tokens per prompt (and a hub model with a chat template is asked
in words instead: `backend.prompts`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from backend import varieties
from backend.prompts import TAGS, format_prompt  # noqa: F401 - format_prompt is re-exported

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
VARIETY_TAGS: tuple[str, ...] = tuple(f"<{v.code}>" for v in varieties.ALL)
PROMPT_FORMAT: str = TAGS  # the embedded base is pretrained on these tags


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 4000,
    *,
    padding_side: str = "left",
    model_max_length: int = 128,
) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`: every string round-trips, Arabic included.

    Ids 0-3 are pad, bos, eos, unk; the variety tags follow. Encoding prepends BOS (as Llama
    tokenizers do); EOS is appended to every training target by `backend.examples.encode`.
    Left padding is the default because generation needs it; a collator may pad either way.
    """
    tags = [AddedToken(t, lstrip=True, rstrip=False, special=True, normalized=False) for t in VARIETY_TAGS]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[PAD, BOS, EOS, UNK, *tags],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=list(VARIETY_TAGS),
        padding_side=padding_side,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )

