"""Lookup-free quantization (LFQ; Yu et al. 2023, MAGVIT-v2) and binary spherical quantization
(BSQ; Zhao et al. 2024).

Each of ``bits`` dimensions is quantized to its sign, so a vector becomes a ``bits``-bit code
(dimension 0 the most significant bit) and there are ``2 ** bits`` implicit codewords, none
stored. With ``spherical`` (BSQ) the vector is first projected onto the unit sphere and the
codewords are ``±1 / sqrt(bits)``, so they lie on the sphere too. Training adds a commitment loss
MSE(u, sg(q)) and, with ``entropy_weight`` > 0, an entropy penalty (reported in the ``codebook``
loss term, as LFQ has no codebook loss): the mean per-vector entropy of the soft code assignment
(low: confident codes) minus the entropy of the batch's mean assignment (high: all codes used).
The per-vector term factorises over bits exactly, because the codewords are a product set. The
batch term does not: a mean of product distributions is no product. ``entropy="joint"`` (the
default, as MAGVIT-v2's LFQ) computes it over all ``2 ** bits`` codes; ``entropy="per_bit"`` uses
BSQ's factorised approximation, the sum of each bit's entropy, which is linear in ``bits`` but
blind to correlation between bits: measured on a tiny ESC it kept every bit near 50/50 (9.9 of
10 bits summed over bits) while the codes themselves carried 4-6 bits, so half the code space
went unused.

In a residual position (stage ``s``) the output is scaled by ``2 ** -s``.

escx's own rather than vector-quantize-pytorch's ``LFQ``: that class owns projections and loss
weights; here the quantizer's projections and escx's loss terms are used, and the batch
entropy is either exact (``joint``) or BSQ's approximation (``per_bit``, for many bits).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from escx.quantizers.kinds import CODEBOOKS, CodebookKind


def _entropy_of_logits(a: Tensor) -> Tensor:
    """Entropy in nats of Bernoulli(sigmoid(a)), elementwise; finite gradient when saturated."""
    p = torch.sigmoid(a)
    # -p log p - (1 - p) log(1 - p) with log p = -softplus(-a) and log(1 - p) = -softplus(a).
    return p * F.softplus(-a) + (1 - p) * F.softplus(a)


def _binary_entropy(p: Tensor, eps: float = 1e-6) -> Tensor:
    """Entropy in nats of Bernoulli(p), elementwise; p clamped so the gradient stays finite."""
    p = p.clamp(eps, 1 - eps)
    return -(p * p.log() + (1 - p) * (1 - p).log())


# Largest code width for the exact (joint) batch entropy: 2 ** 14 probabilities per vector.
MAX_JOINT_BITS = 14


@CODEBOOKS.register
class LFQ(CodebookKind):
    """Lookup-free / binary spherical quantization: the sign of each of k dims; 2^k codes.

    Args:
        dim: must equal ``bits`` (the quantizer projects to it).
        size: must equal ``2 ** bits``.
        stage: residual stage; the output is scaled by ``2 ** -stage``.
        bits: bits per code (10 = 1024 codes, ESC's bitrate).
        spherical: BSQ: L2-normalise the vector, codewords ``±1/sqrt(bits)``.
        entropy_weight: weight of the entropy penalty inside the ``codebook`` loss (0: off).
        temperature: softness of the assignment used by the entropy penalty.
        entropy: how the penalty's batch entropy is computed: ``joint`` over all codes (exact;
            memory grows with ``2 ** bits``, so at most :data:`MAX_JOINT_BITS` bits) or
            ``per_bit`` (BSQ's approximation, any number of bits).
    """

    def __init__(
        self,
        dim: int,
        size: int,
        stage: int = 0,
        bits: int = 10,
        spherical: bool = False,
        entropy_weight: float = 0.0,
        temperature: float = 0.01,
        entropy: str = "joint",
    ) -> None:
        super().__init__()
        self.check_options(
            bits=bits, entropy_weight=entropy_weight, temperature=temperature, entropy=entropy
        )
        self.entropy = entropy
        if dim != bits or size != 2**bits:
            raise ValueError(f"LFQ with {bits} bits quantizes {bits} dims into {2**bits} codes, "
                             f"got dim={dim}, size={size}")  # fmt: skip
        self.dim, self.size, self.stage = dim, size, stage
        self.spherical, self.entropy_weight = spherical, float(entropy_weight)
        self.temperature = float(temperature)
        self.level = 1 / math.sqrt(bits) if spherical else 1.0  # |codeword| per dim
        self.stage_scale = 2.0**-stage
        self.register_buffer("weights", 2 ** torch.arange(bits - 1, -1, -1), persistent=False)
        if entropy == "joint" and entropy_weight:
            # (2 ** bits, bits): the bits of every code, in the order of the code's digits.
            table = (torch.arange(2**bits).unsqueeze(-1) // self.weights) % 2
            self.register_buffer("code_bits", table.float(), persistent=False)

    @classmethod
    def check_options(cls, **options: Any) -> None:
        bits = options.get("bits", 10)
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
            raise ValueError(f"LFQ bits must be an integer in 1..16, got {bits!r}")
        if not options.get("entropy_weight", 0.0) >= 0:
            raise ValueError(f"LFQ entropy_weight must be >= 0, got {options['entropy_weight']}")
        if not options.get("temperature", 0.01) > 0:
            raise ValueError(f"LFQ temperature must be > 0, got {options['temperature']}")
        entropy = options.get("entropy", "joint")
        if entropy not in ("joint", "per_bit"):
            raise ValueError(f"LFQ entropy must be 'joint' or 'per_bit', got {entropy!r}")
        if entropy == "joint" and options.get("entropy_weight", 0.0) and bits > MAX_JOINT_BITS:
            raise ValueError(
                f"LFQ entropy='joint' holds 2**bits probabilities per vector, at most "
                f"{MAX_JOINT_BITS} bits; got bits={bits}: use entropy: per_bit"
            )

    @classmethod
    def num_codes(cls, size: int, **options: Any) -> int:
        return 2 ** options.get("bits", 10)

    @classmethod
    def fixed_dim(cls, **options: Any) -> int | None:
        return options.get("bits", 10)

    def extra_repr(self) -> str:
        return (
            f"bits={self.dim}, spherical={self.spherical}, entropy_weight={self.entropy_weight:g}, "
            f"entropy={self.entropy}, stage={self.stage}"
        )

    def _unit(self, z: Tensor) -> Tensor:
        """Residual at unit scale, on the sphere for BSQ."""
        z = z / self.stage_scale
        return F.normalize(z, dim=-1) if self.spherical else z

    def _codes(self, u: Tensor) -> Tensor:
        return ((u > 0).long() * self.weights).sum(-1)

    def encode(self, z: Tensor) -> Tensor:
        """(B, T, bits) vectors -> (B, T) codes."""
        return self._codes(self._unit(z.float()))

    def lookup(self, codes: Tensor) -> Tensor:
        """Codes (...) -> codewords (..., bits): ±level per bit, times the stage scale."""
        bit = (codes.unsqueeze(-1) // self.weights) % 2
        return (bit * 2 - 1).float() * self.level * self.stage_scale

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sign-quantize; straight-through, commitment loss and entropy penalty in training."""
        u = self._unit(z)
        codes = self._codes(u)
        q_out = self.lookup(codes)
        q = q_out / self.stage_scale  # unit-scale codewords (exact: a power of two)
        commit = (u - q.detach()).pow(2).mean(dim=(1, 2))
        if not self.training:
            return q_out, codes, commit, commit
        penalty = self._entropy_penalty(u) if self.entropy_weight else torch.zeros_like(commit)
        out = u + (q - u).detach()
        return out * self.stage_scale, codes, commit, penalty

    def _entropy_penalty(self, u: Tensor) -> Tensor:
        """Per-sample (B,) entropy penalty of (B, T, bits) unit-scale vectors.

        The soft assignment is softmax(-|u - c|^2 / temperature) over codewords c; for a product
        set of ±level per bit it factorises into per-bit probabilities
        ``p = sigmoid(4 level u / temperature)``, so a code's probability is the product of its
        bits' probabilities.
        """
        logits = 4 * self.level * u.float() / self.temperature
        per_vector = _entropy_of_logits(logits).sum(-1).mean(-1)  # (B,)
        if self.entropy == "per_bit":
            batch = _binary_entropy(torch.sigmoid(logits).mean(dim=(0, 1))).sum()
        else:
            # log P(code) = sum over bits of log p(bit = the code's bit): (B * T, 2 ** bits).
            log_one, log_zero = -F.softplus(-logits), -F.softplus(logits)
            flat_one, flat_zero = log_one.flatten(0, 1), log_zero.flatten(0, 1)
            log_codes = flat_one @ self.code_bits.T + flat_zero @ (1 - self.code_bits).T
            mean = log_codes.softmax(-1).mean(0)  # rows already sum to 1; softmax for stability
            # Clamped: codes no vector can reach underflow to 0, where entr's gradient is infinite.
            batch = torch.special.entr(mean.clamp(min=1e-12)).sum()
        return self.entropy_weight * (per_vector - batch)
