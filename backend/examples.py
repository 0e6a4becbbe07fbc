"""Turning (prompt, target) pairs into model inputs with the loss on target tokens only.

One function for training, the online probe and the evaluation, so "target tokens" means
the same thing everywhere: the tokens of the target sentence plus its end-of-sequence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from backend.prompts import prompt_ids

IGNORE = -100


def encode(tokenizer: Any, prompts: list[str], targets: list[str], max_length: int,
           variety_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Token ids per example: the prompt (BOS once, as `generate` builds it) takes at most half
    of `max_length`, the target the rest.

    An over-long prompt loses tokens from its middle, not its end: the end holds the target tag
    or the chat template's answer header, without which the model does not know what to write.
    """
    p_ids = prompt_ids(tokenizer, prompts)
    t_ids = tokenizer([" " + t for t in targets], add_special_tokens=False)["input_ids"]
    eos = [tokenizer.eos_token_id]
    budget = max(1, max_length // 2)
    out = []
    for i, (p, t) in enumerate(zip(p_ids, t_ids)):
        head = budget // 4
        prompt = p if len(p) <= budget else p[:head] + p[len(p) - (budget - head):]
        target = (t + eos)[: max(1, max_length - len(prompt))]
        item = {"input_ids": prompt + target, "labels": [IGNORE] * len(prompt) + target}
        if variety_ids is not None:
            item["variety_ids"] = variety_ids[i]
        out.append(item)
    return out


def collate(batch: list[dict[str, Any]], pad_id: int) -> dict[str, Tensor]:
    """Right-padded batch; `variety_ids` (one per example) travels along when present."""
    n = max(len(b["input_ids"]) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        ids[i, :k] = torch.tensor(b["input_ids"])
        labels[i, :k] = torch.tensor(b["labels"])
        attn[i, :k] = 1
    out = {"input_ids": ids, "labels": labels, "attention_mask": attn}
    if "variety_ids" in batch[0]:
        out["variety_ids"] = torch.tensor([b["variety_ids"] for b in batch], dtype=torch.long)
    return out


class Collator:
    """Picklable collate_fn for the Trainer's DataLoader."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, Tensor]:
        return collate(batch, self.pad_id)


def target_mask(labels: Tensor) -> Tensor:
    return labels != IGNORE
