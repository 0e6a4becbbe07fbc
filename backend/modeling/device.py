"""Which device and which autocast precision a run uses.

One place decides, so that pretraining, fine-tuning and generation agree: the GPU when
there is one (bf16 autocast where the card supports it, fp16 otherwise), the CPU in full
precision otherwise. Weights stay in float32; autocast does the speed-up.
"""

from __future__ import annotations

import torch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bf16 on a GPU that supports it, fp16 on an older GPU, None (no autocast) on the CPU."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
