"""Collective operations that keep codebooks identical on every DDP rank.

Codebooks learned by gradient stay in sync through DDP's gradient averaging, but k-means
initialisation, EMA updates and dead-entry restarts change codebooks outside the optimizer, from
each rank's own batch. These helpers are what :class:`~escx.quantizers.codebook.VQ` uses
to share statistics (all-reduce), pool data (all-gather) and copy random choices (broadcast).
Without an initialised process group (or with one process) each is a no-op, so single-process
training and tests pay nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if is_distributed() else 0


def all_reduce_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor)
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` in place with rank ``src``'s copy; returns it."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def all_gather_rows(rows: Tensor) -> Tensor:
    """Concatenate every rank's (N_r, D) rows in rank order, on every rank.

    Ranks may hold different row counts (a short last batch): rows are padded to the largest
    count for the collective and trimmed afterwards.

    Args:
        rows: (N_r, D) tensor on this rank.

    Returns:
        (sum_r N_r, D) tensor, identical on every rank.
    """
    if not is_distributed():
        return rows
    world = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = rows.new_zeros((max(sizes), *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous())
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes, strict=True)])
