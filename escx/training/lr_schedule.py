"""Learning-rate schedules for recipes other than ESC's (ESC trains at a constant rate).

:class:`WarmupCosineLR` is the linear-warmup + cosine-decay schedule of most transformer
training. It is stepped once per training batch. Its length defaults to the trainer's
``max_steps``, so a recipe overlay needs no change when a run's budget does.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosineLR(LRScheduler):
    """Linear warmup from ~0 to the optimizer's rate, then cosine decay to ``final_ratio`` of it.

    Args:
        optimizer: the wrapped optimizer; its ``lr`` is the peak rate.
        warmup_steps: batches of linear warmup.
        total_steps: batches over which the schedule runs (warmup included); ``None``: the
            trainer's ``max_steps``, filled in by :class:`~escx.training.module.CodecModule`
            through :meth:`bind_total_steps`. Past the end the rate stays at its final value.
        final_ratio: rate at the end as a fraction of the peak.
        last_epoch: index of the last step (-1 to start), as in every torch scheduler.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        final_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0 or (total_steps is not None and total_steps < 1):
            raise ValueError(
                f"WarmupCosineLR needs warmup_steps >= 0 and total_steps >= 1, got "
                f"{warmup_steps} and {total_steps}"
            )
        if not 0.0 <= final_ratio <= 1.0:
            raise ValueError(f"WarmupCosineLR final_ratio must be in [0, 1], got {final_ratio}")
        self.warmup_steps, self.total_steps, self.final_ratio = (
            warmup_steps,
            total_steps,
            final_ratio,
        )
        super().__init__(optimizer, last_epoch)

    def bind_total_steps(self, max_steps: int) -> None:
        """Use the run's ``max_steps`` as the length when none was given."""
        if self.total_steps is None:
            if max_steps is None or max_steps < 1:
                raise ValueError(
                    "WarmupCosineLR without total_steps needs --trainer.max_steps; set one of them"
                )
            self.total_steps = max_steps

    def factor(self, step: int) -> float:
        """Multiplier of the peak rate at batch ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        total = self.total_steps if self.total_steps is not None else step + 1
        span = max(1, total - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_ratio + (1.0 - self.final_ratio) * cosine

    def get_lr(self) -> list[float]:
        factor = self.factor(max(0, self.last_epoch))
        return [base * factor for base in self.base_lrs]
