"""Several processes under `accelerate launch` (DDP): one run folder, one MSA subspace.

Each process trains on its own share of the batches, so each would otherwise fit its own
probe on its own dialect states and penalise a different subspace. Instead the dialect
states of every process are gathered, the main process (rank 0) updates the probe and
broadcasts U and the means, and every process penalises the very same subspace. Only the
main process writes the run folder; the others learn its id from a broadcast.

With one process every function here is a no-op, so single-process code pays nothing.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from accelerate import PartialState
from torch import Tensor

T = TypeVar("T")


def launched() -> bool:
    """Started by a launcher with more than one process (accelerate/torchrun set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def is_main_launch() -> bool:
    """Rank 0 of a launch, or the only process, by the launcher's RANK: it holds before the
    process group starts and after it ends (what prints a CLI summary once)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def setup() -> torch.device | None:
    """Under a launcher: start the process group now (the run folder is named before the
    Trainer would start it) and return this process's device; None in a single process."""
    if not launched():
        return None
    # Several CPU processes (gloo) when asked or when there is no GPU; accelerate's own
    # default would fall back to a single process there.
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    return PartialState(cpu=cpu).device


def broadcast(obj: T) -> T:
    """The main process's `obj`, on every process (pickled: small objects only)."""
    if world_size() == 1:
        return obj
    box: list[Any] = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(t: Tensor, device: torch.device | str | None = None) -> Tensor:
    """Every process's rows of `t` (any count, zero included), concatenated in rank order,
    on `device` (NCCL gathers GPU tensors only)."""
    if world_size() == 1:
        return t
    t = t.to(device or t.device)
    n = torch.tensor([t.shape[0]], device=t.device)
    counts = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(counts, n)
    sizes = [int(c) for c in counts]
    padded = t.new_zeros((max(1, *sizes), *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:k] for p, k in zip(parts, sizes)])


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def sum_ints(values: list[int], device: torch.device | str = "cpu") -> list[int]:
    """Element-wise sum over processes (token counts, cancellation flags)."""
    if world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.long, device=device)
    dist.all_reduce(t)
    return [int(x) for x in t.tolist()]
