"""A tensor's recent past along its time axis, addressed by absolute position.

Every incremental operation of the streaming coder keeps the inputs it still needs in a
:class:`TimeBuffer` and drops the rest, so the state of a stream is bounded by the receptive
fields of its layers, never by how long the stream has run.
"""

from __future__ import annotations

import torch
from torch import Tensor


class TimeBuffer:
    """Positions ``[start, end)`` of a stream along ``axis``.

    Args:
        axis: the time axis of the tensors appended (negative axes count from the end).
    """

    def __init__(self, axis: int) -> None:
        self.axis = axis
        self.start = 0
        self.data: Tensor | None = None

    @property
    def end(self) -> int:
        """One past the last position received."""
        return self.start + (0 if self.data is None else self.data.shape[self.axis])

    def append(self, x: Tensor | None) -> None:
        """Append positions ``[end, end + x.shape[axis])``."""
        if x is None or x.shape[self.axis] == 0 and self.data is not None:
            return
        if self.data is None or self.data.shape[self.axis] == 0:
            self.data = x  # nothing to keep: no copy
        else:
            self.data = torch.cat([self.data, x], dim=self.axis)

    def take(self, lo: int, hi: int) -> Tensor:
        """Positions ``[lo, hi)``, which must lie in ``[start, end]``."""
        if self.data is None or lo < self.start or hi > self.end or lo > hi:
            raise IndexError(f"positions [{lo}, {hi}) are not in [{self.start}, {self.end})")
        return self.data.narrow(self.axis, lo - self.start, hi - lo)

    def drop_before(self, position: int) -> None:
        """Forget positions before ``position`` (the buffer keeps its own copy of the rest)."""
        if self.data is None or position <= self.start:
            return
        position = min(position, self.end)
        kept = self.data.narrow(self.axis, position - self.start, self.end - position)
        # A copy, so that the dropped part's memory is freed and not kept alive by a view.
        self.data = kept.clone()
        self.start = position


def empty_like_along(x: Tensor, axis: int) -> Tensor:
    """``x`` with zero positions along ``axis``."""
    return x.narrow(axis, 0, 0)
