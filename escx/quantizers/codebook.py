"""ESC's vector-quantization codebook (kind ``VQ``) and its learning techniques.

ESC's codebook (docs/esc.md §7): Kaiming-normal initialisation, nearest neighbour by cosine
similarity (both sides L2-normalised for the search) but the *raw* codeword is returned, a
straight-through estimator, commitment loss MSE(z, sg(q)) and codebook loss MSE(sg(z), q).
ESC fights codebook collapse with a pre-training stage (docs/esc.md §13.4); SoundStream and EnCodec
instead use the techniques below, which are options here so the two can be compared by config:

* ``init="kmeans"``: k-means++ seeding and Lloyd iterations (:mod:`escx.quantizers.kmeans`) on
  the vectors of the first ``kmeans_batches`` quantized training batches, pooled over every DDP
  rank (until then the Kaiming entries quantize as usual);
* ``ema_decay``: entries follow an exponential moving average of the raw vectors assigned to
  them (Laplace-smoothed counts) instead of the codebook loss;
* ``dead_threshold``: an entry whose usage (an EMA of the fraction of vectors it wins) falls below
  ``dead_threshold`` times the uniform share ``1 / size`` is replaced by a random vector of the
  current batch. As a fraction of uniform usage the threshold means the same at any batch size.

Every change made outside the optimizer is identical on all DDP ranks: statistics are
all-reduced, and k-means centroids and restart vectors are broadcast from rank 0
(:mod:`escx.quantizers.sync`).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from escx.quantizers import sync
from escx.quantizers.kinds import CODEBOOKS
from escx.quantizers.kmeans import kmeans
from escx.quantizers.learned import LearnedCodebook

log = logging.getLogger(__name__)

CODEBOOK_INITS = ("kaiming", "kmeans")


def check_codebook_options(
    init: str = "kaiming",
    kmeans_iters: int = 10,
    kmeans_batches: int = 1,
    ema_decay: float | None = None,
    ema_epsilon: float = 1e-5,
    dead_threshold: float = 0.0,
    usage_decay: float = 0.99,
) -> None:
    """Raise a one-line ValueError naming the first invalid codebook-learning option."""
    if init not in CODEBOOK_INITS:
        raise ValueError(f"codebook_init must be one of {CODEBOOK_INITS}, got {init!r}")
    if isinstance(kmeans_iters, bool) or int(kmeans_iters) != kmeans_iters or kmeans_iters < 0:
        raise ValueError(f"kmeans_iters must be a whole number >= 0, got {kmeans_iters!r}")
    if (
        isinstance(kmeans_batches, bool)
        or int(kmeans_batches) != kmeans_batches
        or kmeans_batches < 1
    ):
        raise ValueError(f"kmeans_batches must be a whole number >= 1, got {kmeans_batches!r}")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1) (e.g. 0.99) or null, got {ema_decay}")
    if not ema_epsilon > 0:
        raise ValueError(f"ema_epsilon (Laplace smoothing) must be > 0, got {ema_epsilon}")
    if not dead_threshold >= 0:
        raise ValueError(
            f"dead_threshold is a fraction of uniform usage and must be >= 0 (0: no restarts; "
            f"e.g. 0.1), got {dead_threshold}"
        )
    if not 0.0 < usage_decay < 1.0:
        raise ValueError(f"usage_decay must be in (0, 1) (e.g. 0.99), got {usage_decay}")


@CODEBOOKS.register
class VQ(LearnedCodebook):
    """ESC's vector quantizer: learned entries, cosine search; k-means, EMA, restarts optional.

    Args:
        dim: entry dimension (the down-projected space, 8 in ESC).
        size: number of entries (1024 = 10 bits).
        stage: residual stage (unused: a learned codebook adapts to its residual's scale).
        l2norm: nearest neighbour by cosine similarity (ESC, DAC) instead of Euclidean distance.
        init: "kaiming" (ESC) or "kmeans" (SoundStream/EnCodec: on the first quantized batches).
        kmeans_iters: Lloyd iterations after k-means++ seeding.
        kmeans_batches: training batches whose vectors are pooled for k-means (1: the first
            batch, as EnCodec; more when a batch holds fewer vectors than entries). The Kaiming
            entries quantize those batches; a checkpoint saved before the last of them restarts
            the pooling on resume.
        ema_decay: if set (e.g. 0.99), entries follow an EMA of their assigned vectors and get no
            gradient; the codebook loss is then zero. None: learned by the codebook loss.
        ema_epsilon: Laplace smoothing of the EMA counts (keeps rarely used entries finite).
        dead_threshold: restart entries whose usage is below this fraction of uniform usage
            (``1 / size`` of the vectors); 0 disables restarts.
        usage_decay: decay of the usage EMA that decides which entries are dead.
        estimator: "straight_through" (ESC) or "rotation" (the rotation trick).
    """

    _warned_small_batch: ClassVar[bool] = False  # k-means saw fewer vectors than entries

    def __init__(
        self,
        dim: int,
        size: int = 1024,
        stage: int = 0,
        l2norm: bool = True,
        init: str = "kaiming",
        kmeans_iters: int = 10,
        kmeans_batches: int = 1,
        ema_decay: float | None = None,
        ema_epsilon: float = 1e-5,
        dead_threshold: float = 0.0,
        usage_decay: float = 0.99,
        estimator: str = "straight_through",
    ) -> None:
        super().__init__(dim, size, l2norm, estimator)
        check_codebook_options(init, kmeans_iters, kmeans_batches, ema_decay, ema_epsilon,
                               dead_threshold, usage_decay)  # fmt: skip
        self.init, self.kmeans_iters = init, int(kmeans_iters)
        self.kmeans_batches = int(kmeans_batches)
        self._pooled: list[Tensor] = []  # vectors of the batches seen before k-means
        self.ema_decay, self.ema_epsilon = ema_decay, ema_epsilon
        self.dead_threshold, self.usage_decay = float(dead_threshold), usage_decay
        self._restarts = 0  # entries restarted since the last pop_restarts()
        weight = torch.empty(size, dim)
        nn.init.kaiming_normal_(weight)
        self.weight = nn.Parameter(weight, requires_grad=ema_decay is None)
        self.register_buffer("initialized", torch.tensor(init == "kaiming"))
        if ema_decay is not None:
            self.register_buffer("ema_count", torch.ones(size))
            self.register_buffer("ema_sum", weight.clone())
        if self.dead_threshold > 0:
            # Fraction of vectors each entry wins (EMA), starting at uniform use.
            self.register_buffer("usage", torch.full((size,), 1.0 / size))

    @classmethod
    def check_options(cls, **options: Any) -> None:
        super().check_options(**options)
        names = ("init", "kmeans_iters", "kmeans_batches", "ema_decay", "ema_epsilon",
                 "dead_threshold", "usage_decay")  # fmt: skip
        check_codebook_options(**{k: options[k] for k in names if k in options})

    def extra_repr(self) -> str:
        learning = "gradient" if self.ema_decay is None else f"ema={self.ema_decay}"
        return (
            f"size={self.size}, dim={self.dim}, l2norm={self.l2norm}, init={self.init}, "
            f"{learning}, dead_threshold={self.dead_threshold:g}, estimator={self.estimator}"
        )

    def codewords(self) -> Tensor:
        return self.weight

    @property
    def learns_by_loss(self) -> bool:
        return self.ema_decay is None

    @property
    def restarts_enabled(self) -> bool:
        """Whether dead entries are restarted."""
        return self.dead_threshold > 0

    def pop_restarts(self) -> int:
        """Entries restarted since the last call (the same count on every DDP rank)."""
        count, self._restarts = self._restarts, 0
        return count

    def _before_search(self, flat: Tensor) -> None:
        if not bool(self.initialized):
            self._pool_for_kmeans(flat)

    # ---- learning outside the optimizer (all identical on every DDP rank) ------------------

    @torch.no_grad()
    def _pool_for_kmeans(self, flat: Tensor) -> None:
        self._pooled.append(flat.float())
        if len(self._pooled) == self.kmeans_batches:
            pooled, self._pooled = torch.cat(self._pooled), []
            self._kmeans_init(pooled)

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor) -> None:
        data = sync.all_gather_rows(flat.contiguous())
        # Drawn from the global RNG on every rank (same consumption everywhere, reproducible
        # under seed_everything); rank 0's result is what every rank keeps.
        seed = int(torch.randint(2**62, (1,)))
        centroids = torch.empty(self.size, self.dim, device=flat.device)
        if sync.rank() == 0:
            generator = torch.Generator(device=flat.device).manual_seed(seed)
            centroids = kmeans(data, self.size, self.kmeans_iters, self.l2norm, generator)
        sync.broadcast_(centroids)
        if data.shape[0] < self.size and not VQ._warned_small_batch:
            VQ._warned_small_batch = True  # once per process, not once per codebook
            log.warning(
                "k-means initialisation of a %d-entry codebook saw only %d vectors: %d entries "
                "start as duplicates; raise kmeans_batches, use larger batches or enable "
                "dead_threshold restarts",
                self.size, data.shape[0], self.size - data.shape[0],
            )  # fmt: skip
        self.weight.data.copy_(centroids)
        uniform = data.shape[0] / self.size
        if self.ema_decay is not None:
            self.ema_count.fill_(uniform)
            self.ema_sum.copy_(centroids * uniform)
        if self.restarts_enabled:
            self.usage.fill_(1.0 / self.size)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _learn(self, flat: Tensor, codes: Tensor) -> None:
        if self.ema_decay is None and not self.restarts_enabled:
            return
        # One all-reduce for everything: [EMA sums (size*dim) |] counts (size) | vectors (1).
        counts = torch.bincount(codes, minlength=self.size).float()
        parts = [counts, counts.new_tensor([codes.numel()])]
        if self.ema_decay is not None:
            sums = torch.zeros(self.size, self.dim, device=flat.device)
            parts.insert(0, sums.index_add_(0, codes, flat.float()).flatten())
        stats = sync.all_reduce_(torch.cat(parts))
        total = stats[-1]
        counts = stats[-1 - self.size : -1]
        if self.ema_decay is not None:
            self._ema_update(stats[: self.size * self.dim].view(self.size, self.dim), counts)
        if self.restarts_enabled:
            self.usage.mul_(self.usage_decay).add_(counts / total, alpha=1 - self.usage_decay)
            self._restart_dead(flat, float(total))

    def _ema_update(self, sums: Tensor, counts: Tensor) -> None:
        decay, eps = self.ema_decay, self.ema_epsilon
        self.ema_count.mul_(decay).add_(counts, alpha=1 - decay)
        self.ema_sum.mul_(decay).add_(sums, alpha=1 - decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + eps) / (n + self.size * eps) * n
        self.weight.data.copy_(self.ema_sum / smoothed[:, None])

    def _restart_dead(self, flat: Tensor, total: float) -> None:
        dead = self.usage * self.size < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        n = flat.shape[0]
        pick = (
            torch.randperm(n, device=flat.device)[:n_dead]
            if n_dead <= n
            else torch.randint(n, (n_dead,), device=flat.device)
        )
        fresh = sync.broadcast_(flat[pick].float().contiguous())
        self.weight.data[dead] = fresh.to(self.weight.dtype)
        if self.ema_decay is not None:  # a restarted entry counts as a uniformly used one
            uniform = total / self.size
            self.ema_count[dead] = uniform
            self.ema_sum[dead] = fresh * uniform
        self.usage[dead] = 1.0 / self.size
        self._restarts += n_dead


# The name of this class before codebook kinds existed; kept so existing imports keep working.
Codebook = VQ
