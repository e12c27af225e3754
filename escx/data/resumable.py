"""A DataLoader that resumes mid-epoch, so ``--ckpt_path last`` continues with the next batch.

Lightning stores ``state_dict()`` of every stateful training loader in its checkpoints and
restores it before iterating again. The state is the number of batches of the current epoch
already trained on; on resume those batches are skipped at the *index* level (no audio is read
for them), and the sampler's epoch-seeded order makes the remaining batches identical to the
uninterrupted run's.

The count comes from ``consumed_fn`` (the data module passes Lightning's own batch progress),
because the loader itself cannot tell batches trained on from batches fetched ahead.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader


class _SkipFirst:
    """Index (batch) sampler view that drops its first ``count`` entries."""

    def __init__(self, sampler: Iterable, count: int) -> None:
        self.sampler, self.count = sampler, count

    def __iter__(self) -> Iterator:
        return itertools.islice(iter(self.sampler), self.count, None)

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.count)  # type: ignore[arg-type]


class ResumableDataLoader(DataLoader):
    """DataLoader with Lightning's ``state_dict`` / ``load_state_dict`` resume protocol.

    Args:
        *args: DataLoader arguments.
        consumed_fn: returns the batches of the current epoch already trained on; without it
            the number of batches yielded is used (which may count one fetched-ahead batch).
        **kwargs: DataLoader keyword arguments.
    """

    def __init__(
        self, *args: Any, consumed_fn: Callable[[], int] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.consumed_fn = consumed_fn
        self._skip = 0
        self._yielded = 0
        self._exhausted = True

    @property
    def _index_sampler(self) -> Any:
        sampler = super()._index_sampler
        return _SkipFirst(sampler, self._skip) if self._skip else sampler

    def __iter__(self) -> Iterator:
        iterator = super().__iter__()  # built with the skip applied to the index sampler
        skipped, self._skip = self._skip, 0
        return self._count(iterator, skipped)

    def _count(self, iterator: Iterable, start: int) -> Iterator:
        self._yielded, self._exhausted = start, False
        for batch in iterator:
            self._yielded += 1
            yield batch
        self._exhausted = True

    def state_dict(self) -> dict[str, int]:
        """Batches of the current epoch already consumed by training."""
        if self.consumed_fn is not None:
            return {"consumed": int(self.consumed_fn())}
        return {"consumed": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        consumed = int(state.get("consumed", 0))
        # A checkpoint taken at the end of an epoch starts the next epoch from its beginning.
        self._skip = consumed if consumed < len(self) else 0
