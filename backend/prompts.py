"""How a (source sentence, source variety, target variety) triple becomes the text a model reads.

One object, `Prompter(tokenizer, prompt_format)`, serves training, the online probe,
evaluation, steering and the Compare page, so a run's adapter is always asked the way it was
trained. The formats (a run's `prompt_format` setting):

- "auto": "chat" when the tokenizer has a chat template (instruction-tuned hub models),
  "tags" otherwise (the embedded base, plain pretrained hub models);
- "tags": `<MSA> source <CAI>`, the variety tags the embedded base was pretrained on;
- "chat": one user turn that names both varieties in words, rendered by the tokenizer's own
  `apply_chat_template(..., add_generation_prompt=True)`, so the model answers as it was
  instruction-tuned to;
- any other text containing `{source}`: a custom tag template (what older run configs
  stored), filled with `source`, `source_variety` and `target_variety` codes.
"""

from __future__ import annotations

from typing import Any

from backend import varieties
from backend.errors import UserError

TAGS = "<{source_variety}> {source} <{target_variety}>"
DEFAULT_FORMAT = "auto"
FORMATS = ("auto", "tags", "chat")


def format_prompt(source: str, source_variety: str, target_variety: str, template: str = TAGS) -> str:
    """`format_prompt("ذهبت", "MSA", "cairo")` -> `"<MSA> ذهبت <CAI>"`; names are normalised to codes."""
    if "{source}" not in template:
        raise UserError(f"prompt format {template!r} is not a tag template (it has no {{source}}); "
                        "'auto' and 'chat' need the tokenizer: use backend.prompts.Prompter")
    return template.format(
        source=" ".join(str(source).split()),
        source_variety=varieties.code(source_variety),
        target_variety=varieties.code(target_variety),
    )


def check_format(prompt_format: str) -> str:
    """The format itself if it is one this module understands, else a UserError."""
    if prompt_format in FORMATS or "{source}" in prompt_format:
        return prompt_format
    raise UserError(f"unknown prompt format {prompt_format!r}; choose auto, tags, chat, "
                    "or a template with {source}, {source_variety} and {target_variety}")


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def variety_words(name_or_code: str) -> str:
    """How an instruction names a variety: "Modern Standard Arabic", "the Arabic of Cairo (Egypt)"."""
    v = varieties.get(name_or_code)
    if v.kind == "city":
        return f"the Arabic of {v.name} ({v.country})"
    if v.kind == "group":
        return f"{v.name} Arabic"
    return v.name


def instruction(source: str, source_variety: str, target_variety: str) -> str:
    """The user turn of a chat prompt: the task in words, then the sentence on its own line."""
    return (f"Rewrite this {variety_words(source_variety)} sentence in {variety_words(target_variety)}. "
            f"Answer with the rewritten sentence only.\n\n{' '.join(str(source).split())}")


class Prompter:
    """`Prompter(tokenizer, "auto")("ذهبت", "MSA", "CAI")` -> the prompt text for that model."""

    def __init__(self, tokenizer: Any, prompt_format: str | None = DEFAULT_FORMAT) -> None:
        fmt = check_format(prompt_format or DEFAULT_FORMAT)
        if fmt == "auto":
            fmt = "chat" if has_chat_template(tokenizer) else "tags"
        if fmt == "chat" and not has_chat_template(tokenizer):
            raise UserError("prompt format 'chat' needs a tokenizer with a chat template; this model has none "
                            "(use 'auto' or 'tags')")
        self.tokenizer = tokenizer
        self.kind = "chat" if fmt == "chat" else "tags"
        self.template = TAGS if fmt in ("tags", "chat") else fmt

    def __call__(self, source: str, source_variety: str, target_variety: str) -> str:
        if self.kind == "tags":
            return format_prompt(source, source_variety, target_variety, self.template)
        messages = [{"role": "user", "content": instruction(source, source_variety, target_variety)}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt with BOS in front (when the tokenizer has one), exactly once:
    a chat template that writes BOS itself does not get a second one."""
    bos = tokenizer.bos_token_id
    out = []
    for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]:
        out.append(ids if bos is None or ids[:1] == [bos] else [bos, *ids])
    return out
