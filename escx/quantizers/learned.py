"""The shared search-and-estimate machinery of codebook kinds with learned entries (VQ, SimVQ).

A learned codebook holds ``size`` codewords (``codewords()``, (size, dim)); a vector's code is its
nearest codeword, by cosine similarity (ESC, DAC: both sides L2-normalised for the search) or by
Euclidean distance, and the *raw* codeword is returned. Training adds the commitment loss
MSE(z, sg(q)) and, unless the entries are learned another way (EMA), the codebook loss
MSE(sg(z), q), both per sample (docs/esc.md §7), and replaces q by a differentiable estimate
(:mod:`escx.quantizers.estimators`). In eval both losses equal MSE(q, z) and q is returned as is,
so ``decode(encode(x))`` equals the eval forward exactly.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from escx.quantizers.estimators import check_estimator, estimate
from escx.quantizers.kinds import CodebookKind
from escx.quantizers.kmeans import nearest_centroid


class LearnedCodebook(CodebookKind):
    """Base of kinds that search a learned codebook; subclasses define :meth:`codewords`.

    Args:
        dim: entry dimension.
        size: number of entries.
        l2norm: nearest neighbour by cosine similarity instead of Euclidean distance.
        estimator: "straight_through" (ESC) or "rotation" (the rotation trick).
    """

    def __init__(
        self, dim: int, size: int, l2norm: bool = True, estimator: str = "straight_through"
    ) -> None:
        super().__init__()
        check_estimator(estimator)
        self.dim, self.size, self.l2norm, self.estimator = dim, size, l2norm, estimator

    @classmethod
    def check_options(cls, **options) -> None:
        check_estimator(options.get("estimator", "straight_through"))

    @property
    def learns_by_loss(self) -> bool:
        """Whether the codebook loss trains the entries (False when they follow an EMA)."""
        return True

    def codewords(self) -> Tensor:
        """The (size, dim) entries."""
        raise NotImplementedError

    def nearest(self, z: Tensor, book: Tensor | None = None) -> Tensor:
        """Indices (N,) of the nearest entries to (N, dim) vectors."""
        book = self.codewords() if book is None else book
        # The same search as k-means' assignment step, so initial centroids match their use.
        return nearest_centroid(z.float(), book.float(), self.l2norm)

    def lookup(self, codes: Tensor, book: Tensor | None = None) -> Tensor:
        """Raw codewords (..., dim) for integer codes (...)."""
        return F.embedding(codes, self.codewords() if book is None else book)

    def encode(self, z: Tensor) -> Tensor:
        """(B, T, dim) vectors -> (B, T) codes."""
        return self.nearest(z.reshape(-1, self.dim)).view(z.shape[:-1])

    def _before_search(self, flat: Tensor) -> None:
        """Training hook on the batch's detached (N, dim) vectors before the search (k-means)."""

    def _learn(self, flat: Tensor, codes: Tensor) -> None:
        """Training hook after the lookup: learning outside the optimizer (EMA, restarts)."""

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Quantize; in training also run the kind's own learning.

        Args:
            z: (B, T, dim) float32 vectors.

        Returns:
            ``(z_q, codes, commit, codebook)``: z_q (B, T, dim) (the estimator's output in
            training), codes (B, T), per-sample commitment and codebook losses (B,).
        """
        flat = z.reshape(-1, self.dim)
        if self.training:
            self._before_search(flat.detach())
        book = self.codewords()
        codes = self.nearest(flat, book)
        z_q = self.lookup(codes, book).view_as(z)
        if self.training:  # after the lookup: this batch is quantized with the entries it chose
            self._learn(flat.detach(), codes)
        if not self.training:
            loss = (z_q - z).pow(2).mean(dim=(1, 2))
            return z_q, codes.view(z.shape[:-1]), loss, loss
        commit = (z - z_q.detach()).pow(2).mean(dim=(1, 2))
        if self.learns_by_loss:
            codebook = (z.detach() - z_q).pow(2).mean(dim=(1, 2))
        else:
            codebook = commit.new_zeros(commit.shape)
        return estimate(self.estimator, z, z_q), codes.view(z.shape[:-1]), commit, codebook
