"""Training phases and quantizer dropout, both functions of the number of batches seen.

Keying everything on batches seen (not ``global_step``, which counts optimizer steps and advances
twice per batch once a discriminator trains) makes the schedule exact under resume and identical
on every DDP rank without any communication.
"""

from __future__ import annotations

from enum import Enum

import torch


class Phase(str, Enum):
    """What a batch trains (docs/esc.md §13.4)."""

    PRETRAIN = "pretrain"  # quantizer bypassed: an auto-encoder with the VQ projections in place
    QUANTIZED = "quantized"  # codebooks on, reconstruction + VQ losses
    ADVERSARIAL = "adversarial"  # quantized + discriminator updates and GAN losses


class PhaseSchedule:
    """Phase of batch ``n`` (0-based count of training batches seen).

    Args:
        pretrain_steps: batches trained with the quantizer bypassed (ESC: 15 of 80 epochs).
        adversarial_start: first batch with discriminator updates (None: right after
            pre-training); ignored when there are no discriminators.
        adversarial: whether discriminators exist.
    """

    def __init__(
        self, pretrain_steps: int, adversarial_start: int | None = None, adversarial: bool = False
    ) -> None:
        if pretrain_steps < 0:
            raise ValueError(f"pretrain_steps must be >= 0, got {pretrain_steps}")
        self.pretrain_steps = pretrain_steps
        start = pretrain_steps if adversarial_start is None else adversarial_start
        if start < pretrain_steps:
            raise ValueError(
                f"adversarial_start ({start}) must not precede the end of pre-training "
                f"({pretrain_steps}): discriminators train on quantized output"
            )
        self.adversarial_start = start if adversarial else None

    def phase(self, batches_seen: int) -> Phase:
        if batches_seen < self.pretrain_steps:
            return Phase.PRETRAIN
        if self.adversarial_start is not None and batches_seen >= self.adversarial_start:
            return Phase.ADVERSARIAL
        return Phase.QUANTIZED

    def renews_optimizer(self, batches_seen: int) -> bool:
        """True on the batch that starts with a fresh generator optimizer: the second quantized one.

        The reference trainer creates its new AdamW at the top of the batch whose index (0-based)
        is ``pretrain_steps + 1``, so the first quantized batch still steps the pre-training
        optimizer (its moments, and its step count in the bias correction). escx renews on the
        same batch, to train step for step like the reference.
        """
        return self.pretrain_steps > 0 and batches_seen == self.pretrain_steps + 1


class QuantizerDropout:
    """Streams used by a training batch (docs/esc.md §13.3): with probability ``p`` draw uniformly
    from 1..max_streams, else use all. One draw per batch, not per sample.

    The draw is a pure function of ``(seed, batch index)``, so every DDP rank draws the same value
    and a resumed run continues with exactly the draw the interrupted run would have made.
    """

    def __init__(self, p: float, max_streams: int, seed: int) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {p}")
        self.p, self.max_streams, self.seed = p, max_streams, seed

    def draw(self, batch_index: int) -> int:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + batch_index)
        u, s = (
            torch.rand((), generator=generator),
            torch.randint(1, self.max_streams + 1, (), generator=generator),
        )
        return int(s) if float(u) < self.p else self.max_streams
