"""One vector-quantization codebook and its learning techniques.

ESC's codebook (ESC.md 1.6): Kaiming-normal initialisation, nearest neighbour by cosine
similarity (both sides L2-normalised for the search) but the *raw* codeword is returned, a
straight-through estimator, commitment loss MSE(z, sg(q)) and codebook loss MSE(sg(z), q).

SoundStream/EnCodec techniques are options, so codebook collapse can be studied by config:
k-means initialisation on the first training batch, exponential-moving-average (EMA) codeword
updates instead of the codebook loss, and restarting dead entries with vectors from the batch.
Under DDP their statistics are all-reduced and random choices broadcast from rank 0, so every
rank keeps the same codebook.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(tensor: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(tensor)
    return tensor


def _broadcast(tensor: Tensor) -> Tensor:
    if _distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def kmeans(vectors: Tensor, k: int, iters: int, generator: torch.Generator | None = None) -> Tensor:
    """Plain Lloyd k-means on (N, D) vectors; returns (k, D) centroids (empty ones keep theirs)."""
    n = vectors.shape[0]
    idx = torch.randint(n, (k,), generator=generator, device="cpu").to(vectors.device)
    centroids = vectors[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(vectors, centroids).argmin(dim=1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, vectors)
        counts = torch.bincount(assign, minlength=k).unsqueeze(1).to(vectors.dtype)
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids


class Codebook(nn.Module):
    """A codebook of ``size`` entries of dimension ``dim``.

    Args:
        dim: entry dimension (the down-projected space, 8 in ESC).
        size: number of entries (1024 = 10 bits).
        l2norm: nearest neighbour by cosine similarity (ESC, DAC) instead of Euclidean distance.
        init: "kaiming" (ESC) or "kmeans" (SoundStream/EnCodec; on the first training batch).
        ema_decay: if set (e.g. 0.99), entries follow an EMA of their assigned vectors and get no
            gradient; the codebook loss is then zero.
        dead_threshold: entries whose EMA usage count (vectors per batch) falls below this are
            replaced by random vectors from the batch; 0 disables restarts.
        usage_decay: decay of the usage EMA used for restarts.
        kmeans_iters: Lloyd iterations for the k-means initialisation.
    """

    def __init__(
        self,
        dim: int,
        size: int = 1024,
        l2norm: bool = True,
        init: str = "kaiming",
        ema_decay: float | None = None,
        dead_threshold: float = 0.0,
        usage_decay: float = 0.99,
        kmeans_iters: int = 10,
    ) -> None:
        super().__init__()
        if init not in ("kaiming", "kmeans"):
            raise ValueError(f"codebook init must be 'kaiming' or 'kmeans', got {init!r}")
        self.dim, self.size, self.l2norm = dim, size, l2norm
        self.init, self.ema_decay, self.dead_threshold = init, ema_decay, dead_threshold
        self.usage_decay, self.kmeans_iters = usage_decay, kmeans_iters
        weight = torch.empty(size, dim)
        nn.init.kaiming_normal_(weight)
        self.weight = nn.Parameter(weight, requires_grad=ema_decay is None)
        self.register_buffer("initialized", torch.tensor(init == "kaiming"))
        if ema_decay is not None:
            self.register_buffer("ema_count", torch.ones(size))
            self.register_buffer("ema_sum", weight.clone())
        if dead_threshold > 0:
            self.register_buffer("usage", torch.full((size,), float(dead_threshold)))

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, l2norm={self.l2norm}, init={self.init}"

    def nearest(self, z: Tensor) -> Tensor:
        """Indices (N,) of the nearest entries to (N, dim) vectors."""
        codebook = self.weight.float()
        z = z.float()
        if self.l2norm:
            codebook, z = F.normalize(codebook, dim=-1), F.normalize(z, dim=-1)
        dist_ = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.t() + codebook.pow(2).sum(1)[None]
        return dist_.argmin(dim=1)

    def lookup(self, codes: Tensor) -> Tensor:
        """Raw codewords (..., dim) for integer codes (...)."""
        return F.embedding(codes, self.weight)

    def encode(self, z: Tensor) -> Tensor:
        """(B, T, dim) vectors -> (B, T) codes."""
        return self.nearest(z.reshape(-1, self.dim)).view(z.shape[:-1])

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantize.

        Args:
            z: (B, T, dim) float32 vectors.

        Returns:
            ``(z_q, codes, commit, codebook)``: z_q (B, T, dim) (straight-through in training),
            codes (B, T), per-sample commitment and codebook losses (B,).
        """
        flat = z.reshape(-1, self.dim)
        if self.training and not bool(self.initialized):
            self._kmeans_init(flat.detach())
        codes = self.nearest(flat)
        if self.training:
            self._learn(flat.detach(), codes)
        z_q = self.lookup(codes).view_as(z)
        if not self.training:
            loss = (z_q - z).pow(2).mean(dim=(1, 2))
            return z_q, codes.view(z.shape[:-1]), loss, loss
        commit = (z - z_q.detach()).pow(2).mean(dim=(1, 2))
        if self.ema_decay is None:
            codebook = (z.detach() - z_q).pow(2).mean(dim=(1, 2))
        else:
            codebook = commit.new_zeros(commit.shape)
        z_q = z + (z_q - z).detach()
        return z_q, codes.view(z.shape[:-1]), commit, codebook

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor) -> None:
        centroids = kmeans(flat.float(), self.size, self.kmeans_iters)
        self.weight.data.copy_(_broadcast(centroids))
        if self.ema_decay is not None:
            self.ema_sum.copy_(self.weight.data)
            self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _learn(self, flat: Tensor, codes: Tensor) -> None:
        if self.ema_decay is None and self.dead_threshold <= 0:
            return
        counts = _all_reduce(torch.bincount(codes, minlength=self.size).float())
        if self.ema_decay is not None:
            sums = torch.zeros_like(self.ema_sum).index_add_(0, codes, flat.float())
            _all_reduce(sums)
            decay = self.ema_decay
            self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
            self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + 1e-5) / (total + self.size * 1e-5) * total
            self.weight.data.copy_(self.ema_sum / smoothed[:, None])
        if self.dead_threshold > 0:
            world = dist.get_world_size() if _distributed() else 1
            self.usage.mul_(self.usage_decay).add_(counts / world, alpha=1 - self.usage_decay)
            self._restart_dead(flat)

    def _restart_dead(self, flat: Tensor) -> None:
        dead = self.usage < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        pick = torch.randint(flat.shape[0], (n_dead,), device=flat.device)
        fresh = _broadcast(flat[pick].float().contiguous())
        self.weight.data[dead] = fresh
        if self.ema_decay is not None:
            self.ema_sum[dead] = fresh
            self.ema_count[dead] = 1.0
        self.usage[dead] = float(self.dead_threshold)
