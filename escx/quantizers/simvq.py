"""SimVQ: a frozen random codebook basis times one learned linear map (Zhu et al. 2024).

Plain VQ updates only the entries that win, so unused entries never move and collapse sets in.
SimVQ re-parameterises the codebook as ``C = B W^T``: the basis ``B`` (size, dim) is drawn once
(Kaiming-normal, as ESC's entries) and frozen, and the (dim, dim) map ``W`` is learned by the
codebook loss. Every entry depends on ``W``, so every entry moves at each step. The search, the
losses and the estimator are ESC's (:class:`~escx.quantizers.learned.LearnedCodebook`).

escx's own rather than vector-quantize-pytorch's ``SimVQ``: that class searches by Euclidean
distance only and owns its own input/output projections and loss weighting, whereas here the
quantizer's projections, ESC's cosine search and escx's loss terms are kept, so SimVQ differs from
ESC's VQ in the codebook parameterisation alone.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from escx.quantizers.kinds import CODEBOOKS
from escx.quantizers.learned import LearnedCodebook


@CODEBOOKS.register
class SimVQ(LearnedCodebook):
    """SimVQ: frozen random basis times a learned linear map; every entry moves each step.

    Args:
        dim: entry dimension.
        size: number of entries.
        stage: residual stage (unused: the map adapts to its residual's scale).
        l2norm: nearest neighbour by cosine similarity (ESC) instead of Euclidean distance.
        estimator: "straight_through" (ESC) or "rotation" (the rotation trick).
    """

    def __init__(
        self,
        dim: int,
        size: int = 1024,
        stage: int = 0,
        l2norm: bool = True,
        estimator: str = "straight_through",
    ) -> None:
        super().__init__(dim, size, l2norm, estimator)
        basis = torch.empty(size, dim)
        nn.init.kaiming_normal_(basis)
        # A buffer: frozen, saved in the state dict, identical on DDP ranks (seeded and broadcast).
        self.register_buffer("basis", basis)
        self.map = nn.Linear(dim, dim, bias=False)
        # Identity start: the initial codebook is the Kaiming basis, like ESC's initial entries.
        nn.init.eye_(self.map.weight)

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, l2norm={self.l2norm}, estimator={self.estimator}"

    def codewords(self) -> Tensor:
        return self.map(self.basis)
