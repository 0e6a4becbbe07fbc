"""Batched generation for evaluation, the Compare page and the CLI.

Prompts are sorted by token length so that a batch holds prompts of similar length (little
padding), padded on the left so every prompt ends where generation starts, and the results
are put back in the caller's order. Greedy decoding is the default; beam search and
sampling are options. The global RNG is forked, so a seed gives the same samples every time
and generation never disturbs the caller's random state (for example mid-training).
"""

from __future__ import annotations

import contextlib

import torch
from transformers import GenerationConfig

from backend.errors import LimitError
from backend.modeling.device import autocast_dtype
from backend.prompts import prompt_ids


def _max_positions(model) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "max_position_embeddings", None)


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    *,
    batch_size: int = 16,
    max_new_tokens: int = 48,
    num_beams: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """The continuation of each prompt, special tokens stripped, in the order of `prompts`."""
    if not prompts:
        return []
    if batch_size < 1 or max_new_tokens < 1 or num_beams < 1:
        raise ValueError("batch_size, max_new_tokens and num_beams must be at least 1")
    device = next(model.parameters()).device
    # Exactly as backend.examples.encode builds a training prompt: BOS (once, if any) + the prompt.
    encoded = prompt_ids(tokenizer, list(prompts))
    limit = _max_positions(model)
    longest = max(len(ids) for ids in encoded)
    if limit is not None and longest >= limit:
        raise LimitError(f"a prompt is {longest} tokens long; this model reads at most {limit - 1}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = model.generation_config.eos_token_id
    if eos_id is None:
        eos_id = tokenizer.eos_token_id
    gen = dict(do_sample=do_sample, num_beams=num_beams, use_cache=True, pad_token_id=pad_id, eos_token_id=eos_id)
    if do_sample:
        gen.update(temperature=temperature, top_p=top_p, top_k=0)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    dtype = autocast_dtype(device)
    amp = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), amp:
            torch.manual_seed(seed)
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                width = max(len(encoded[i]) for i in idx)
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    n = len(encoded[i])
                    input_ids[row, width - n:] = torch.tensor(encoded[i])
                    mask[row, width - n:] = 1
                budget = max_new_tokens if limit is None else min(max_new_tokens, limit - width)
                out = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=mask.to(device),
                    generation_config=GenerationConfig(max_new_tokens=budget, **gen),
                )
                texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
                for i, text in zip(idx, texts, strict=True):
                    outputs[i] = text.strip()
    finally:
        model.train(was_training)
    return outputs
