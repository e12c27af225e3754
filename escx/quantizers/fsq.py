"""Finite scalar quantization (FSQ; Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE
Made Simple").

Each of the ``len(levels)`` dimensions is squashed by ``tanh`` into a range holding ``L_d``
integers and rounded to the nearest one; the code is the mixed-radix number of the rounded
digits, so there are ``prod(levels)`` codes and no codebook, no codebook loss and nothing that
can collapse. Rounding is passed through by the straight-through estimator.

The straight-through estimator hides the rounding from the encoder: nothing in its gradient says
that variations smaller than a level step are lost, so a short run can leave each dimension inside
one or two levels and most codes unused. ``noise_dropout`` (vector-quantize-pytorch's option of
the same name; additive uniform noise as a training proxy for rounding is Ballé et al. 2017's)
replaces the rounding of each value in training, with that probability, by the unrounded value
plus noise uniform in +-half a step, so that the encoder sees the loss a rounding causes. The
codes and the eval output are always rounded. Off by default: on the tiny ESC with the quick
recipe, 0.5 and 0.05 both drove the coarse streams into saturation, one code each
(docs/ablations.md).

In a residual position (stage ``s`` of a residual VQ) the input is divided by
``(L_d - 1) ** s`` before rounding and the output multiplied back, so later stages resolve the
finer residual instead of rounding it all to zero.

escx's own rather than vector-quantize-pytorch's ``FSQ``: that class adds its own projections,
symmetry options and index offsets; here the quantizer's projections are used, the state dict
holds nothing for FSQ, the residual scaling is explicit, and the eval output is computed by the
same float operations as :meth:`FSQ.lookup`, so ``decode(encode(x))`` equals the forward exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from escx.quantizers.kinds import CODEBOOKS, CodebookKind


@CODEBOOKS.register
class FSQ(CodebookKind):
    """Finite scalar quantization: each dim rounded to a few levels; prod(levels) codes.

    Args:
        dim: must equal ``len(levels)`` (the quantizer projects to it).
        size: must equal ``prod(levels)`` (the quantizer takes it from the levels).
        stage: residual stage (0 for the first); scales the rounding grid by ``(L - 1) ** -stage``.
        levels: levels per dimension, each >= 2: [4, 4, 4, 4, 4] = 1024 codes (10 bits),
            [8, 5, 5, 5] = 1000 codes (log2 1000 = 9.97 bits, the FSQ paper's choice near 2^10).
        noise_dropout: probability, per value and training step, of replacing its rounding by
            uniform noise of one level step (0: always straight-through rounding, FSQ's paper).
    """

    def __init__(
        self,
        dim: int,
        size: int,
        stage: int = 0,
        levels: Sequence[int] = (4, 4, 4, 4, 4),
        noise_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.check_options(levels=levels, noise_dropout=noise_dropout)
        self.noise_dropout = float(noise_dropout)
        if dim != len(levels) or size != math.prod(levels):
            raise ValueError(f"FSQ{list(levels)} quantizes {len(levels)} dims into "
                             f"{math.prod(levels)} codes, got dim={dim}, size={size}")  # fmt: skip
        self.dim, self.size, self.stage = dim, size, stage
        lv = torch.tensor(list(levels), dtype=torch.long)
        radix = torch.cumprod(torch.cat([lv.new_ones(1), lv[:-1]]), 0)
        half = (lv - 1).double() / 2
        # Even L: the range is shifted by half a step so that exactly L integers fit in it.
        offset = (lv % 2 == 0).double() / 2
        # Constants, not state: rebuilt from ``levels`` (non-persistent buffers follow .to()).
        self.register_buffer("levels", lv, persistent=False)
        self.register_buffer("radix", radix, persistent=False)
        self.register_buffer("half_range", half.float(), persistent=False)
        self.register_buffer("offset", offset.float(), persistent=False)
        self.register_buffer("shift", torch.atanh(offset / half).float(), persistent=False)
        self.register_buffer("centre", (lv // 2).float(), persistent=False)
        self.register_buffer("scale", ((lv - 1).double() ** -stage).float(), persistent=False)

    @classmethod
    def check_options(cls, **options: Any) -> None:
        levels = options.get("levels", (4, 4, 4, 4, 4))
        if (
            isinstance(levels, str | bytes)
            or not isinstance(levels, Sequence)
            or not levels
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in levels)
        ):
            raise ValueError(f"FSQ levels must be a list of integers >= 2, got {levels!r}")
        noise = options.get("noise_dropout", 0.0)
        if isinstance(noise, bool) or not isinstance(noise, int | float) or not 0 <= noise <= 1:
            raise ValueError(f"FSQ noise_dropout must be a probability in [0, 1], got {noise!r}")

    @classmethod
    def num_codes(cls, size: int, **options: Any) -> int:
        return math.prod(options.get("levels", (4, 4, 4, 4, 4)))

    @classmethod
    def fixed_dim(cls, **options: Any) -> int | None:
        return len(options.get("levels", (4, 4, 4, 4, 4)))

    def extra_repr(self) -> str:
        noise = f", noise_dropout={self.noise_dropout:g}" if self.noise_dropout else ""
        return f"levels={self.levels.tolist()}, stage={self.stage}{noise}"

    def _round(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Bounded values and their rounded integers (both float, (..., dim))."""
        bounded = torch.tanh(z / self.scale + self.shift) * self.half_range - self.offset
        return bounded, torch.round(bounded)

    def _codes(self, integers: Tensor) -> Tensor:
        digits = integers.long() + self.centre.long()
        return (digits * self.radix).sum(-1)

    def _value(self, integers: Tensor) -> Tensor:
        return integers / self.centre * self.scale

    def encode(self, z: Tensor) -> Tensor:
        """(B, T, dim) vectors -> (B, T) codes."""
        return self._codes(self._round(z.float())[1])

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes (...) -> grid values (..., dim) in [-1, 1] times the stage scale."""
        digits = codes.unsqueeze(-1) // self.radix % self.levels
        return self._value((digits - self.centre.long()).float())

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Round to the grid; straight-through (or, with ``noise_dropout``, noise) in training;
        no losses (FSQ needs none)."""
        bounded, integers = self._round(z)
        codes = self._codes(integers)
        if self.training:
            rounded = bounded + (integers - bounded).detach()
            if self.noise_dropout:
                noisy = bounded + torch.rand_like(bounded) - 0.5
                picked = torch.rand_like(bounded) < self.noise_dropout
                rounded = torch.where(picked, noisy, rounded)
            integers = rounded
        zero = z.new_zeros(z.shape[0])
        return self._value(integers), codes, zero, zero.clone()
