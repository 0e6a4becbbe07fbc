"""Which device and which autocast precision a run uses.

One place decides, so that pretraining, fine-tuning and generation agree: the GPU when
there is one (bf16 autocast where the card supports it, fp16 otherwise), the CPU in full
precision otherwise. Weights stay in float32 unless a run asks otherwise (`weights_dtype`):
`auto` loads bf16 weights on a GPU that has bf16, which halves the memory of a 7B model.
"""

from __future__ import annotations

import torch

from backend.errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bf16 on a GPU that supports it, fp16 on an older GPU, None (no autocast) on the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def weights_dtype(dtype: str, device: torch.device | str) -> torch.dtype:
    """`auto`: bf16 on a CUDA GPU that supports it, fp32 elsewhere (a CPU, an older GPU)."""
    if dtype == "auto":
        device = torch.device(device)
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]
