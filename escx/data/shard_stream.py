"""Training crops streamed from WebDataset shards, split across ranks and workers, resumable.

**The stream.** Passes over the shards follow one another without end. Pass ``p`` visits the
shards in an order shuffled from ``(seed, p)``; within a shard, samples come out of a small
shuffle buffer seeded from ``(seed, p, shard)`` and started afresh in each shard. Each sample
gives one random crop, seeded from ``(seed, p, shard, position in the shard)``, so a sample's
crop does not depend on who reads it.

**The split.** Every data-loader worker of every rank is one *consumer* (``C = ranks x
workers``). With at least ``C`` shards, consumer ``c`` reads the shards at positions ``c, c +
C, ...`` of each pass's order: no two consumers read the same shard in a pass, and each pass
covers every shard once. With fewer shards than consumers, every consumer reads every shard and
keeps every ``C``-th sample of the stream (fewer duplicates impossible, more reading).

**Epochs.** An epoch is ``E = samples // (ranks x batch)`` batches per rank (at least one), the
same on every rank, so no rank waits for another at the end; the DataLoader hands out batches
from its workers in turn, worker ``w`` giving ``ceil((E - w) / workers)`` of them, and the next
epoch continues each worker's stream where it stopped. Within a pass no two readers read the
same shard (or, with fewer shards than readers, the same sample); readers whose epochs are one
batch apart drift apart by that over the passes, so a sample may come twice or not at all
around a pass boundary, as with any sharded stream.

**Resume (what is guaranteed).** A checkpoint records the epoch and the batches of it trained;
every worker's position in its stream is a function of those, its worker number and the shard
sample counts, so a resumed run skips whole shards by count (no reading) and only replays the
shard it stopped in without decoding it. With the same shards, ranks, workers, batch size and
seed, the resumed run sees exactly the batches the uninterrupted run would have (unless a
sample failed to decode before the stop: each failure shifts that worker's stream by one
sample). With another rank or worker count the positions are recomputed for the new layout
from the same epoch and batch count: the run continues about as far into the data, in a
different order, and does not start the shard order again from the beginning.
"""

from __future__ import annotations

import logging
import math
import random
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from escx.audio import AudioError, audio_info, read_audio
from escx.data.datasets import MAX_FAILED_IN_A_ROW, fit_length, mix_seed
from escx.data.shard_files import iter_samples
from escx.data.shards import ShardSet

log = logging.getLogger(__name__)

# Samples held per worker (their encoded bytes) to mix a shard's order, and the most bytes they
# may take: long recordings fill the buffer by size first.
SHUFFLE_BUFFER = 64
SHUFFLE_BUFFER_BYTES = 256 * 2**20


def _shuffled(samples: Iterator[tuple[str, bytes | None]], seed: int) -> Iterator[Any]:
    """A buffer shuffle of one shard's samples, deterministic given ``seed``."""
    rng = random.Random(seed)
    buffer: list[Any] = []
    held = 0
    for sample in samples:
        buffer.append(sample)
        held += len(sample[1] or b"")
        while len(buffer) >= SHUFFLE_BUFFER or held > SHUFFLE_BUFFER_BYTES:
            j = rng.randrange(len(buffer))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            held -= len(buffer[-1][1] or b"")
            yield buffer.pop()
    while buffer:
        j = rng.randrange(len(buffer))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        yield buffer.pop()


class ShardCropDataset(IterableDataset):
    """Endless stream of training crops from shards (see the module docstring).

    Args:
        shards: the checked shards and their sample counts.
        segment_samples: crop length in samples.
        sample_rate: rate the audio is read at.
        seed: seed of the shard order, the shuffle and the crops.
        batch_size: training batch size per rank (the epoch is a whole number of batches).
        rank: this process's rank.
        world_size: number of ranks.
        label: the source's name in messages.
    """

    def __init__(
        self,
        shards: ShardSet,
        segment_samples: int,
        sample_rate: int,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        label: str = "shards",
    ) -> None:
        self.shards, self.segment_samples, self.sample_rate = shards, segment_samples, sample_rate
        self.seed, self.batch_size, self.rank, self.world = seed, batch_size, rank, world_size
        self.label = label
        self.epoch_batches = max(1, shards.samples // (world_size * batch_size))
        # (epoch, batches of it already trained), shared with worker processes, also persistent
        # ones: the loader sets it before each iteration starts.
        self.position = torch.zeros(2, dtype=torch.int64).share_memory_()
        self.failures = 0

    def __len__(self) -> int:
        return self.epoch_batches * self.batch_size

    # ---- which samples a consumer reads -------------------------------------------------------

    def _order(self, p: int) -> list[int]:
        order = list(range(len(self.shards.urls)))
        random.Random(mix_seed(self.seed, p)).shuffle(order)
        return order

    def _units(
        self, consumer: int, consumers: int, start: int
    ) -> Iterator[tuple[int, int, int, int]]:
        """(pass, shard, first position, step) of the consumer's stream, from its ``start``-th
        sample on: whole shards skipped by count, then shard by shard."""
        counts, total = self.shards.counts, self.shards.samples
        if len(counts) >= consumers:  # whole shards per consumer
            p = 0
            while True:
                for shard in self._order(p)[consumer::consumers]:
                    if start >= counts[shard]:
                        start -= counts[shard]
                        continue
                    yield p, shard, start, 1
                    start = 0
                p += 1
        # Every consumer keeps every `consumers`-th sample of the whole stream.
        g = consumer + start * consumers  # global position of the next sample to keep
        p, g = g // total, g % total
        while True:
            base = 0
            for shard in self._order(p):
                n = counts[shard]
                if g < base + n:
                    yield p, shard, g - base, consumers
                    kept = (base + n - 1 - g) // consumers + 1
                    g += kept * consumers
                base += n
            p, g = p + 1, g - total

    # ---- reading ------------------------------------------------------------------------------

    def _crop(self, data: bytes, p: int, shard: int, position: int) -> torch.Tensor | None:
        try:
            frames = audio_info(data, self.sample_rate).target_frames
            spare = frames - self.segment_samples
            offset = 0
            if spare > 0:
                gen = torch.Generator().manual_seed(mix_seed(self.seed, p, shard, position))
                offset = int(torch.randint(0, spare + 1, (1,), generator=gen))
            audio, _ = read_audio(data, self.sample_rate, offset, self.segment_samples)
        except AudioError as err:
            self._failed(f"{self.shards.urls[shard]}: sample {position}: {err}")
            return None
        return fit_length(audio, self.segment_samples)

    def _failed(self, message: str) -> None:
        self.failures += 1
        if self.failures == 1 or math.log10(self.failures).is_integer():
            log.warning("%s: skipped %d unreadable sample(s) or shard(s) so far in this loader "
                        "process; last: %s", self.label, self.failures, message)  # fmt: skip

    def _samples(self, consumer: int, consumers: int, start: int) -> Iterator[torch.Tensor]:
        in_a_row = 0
        for p, shard, first, step in self._units(consumer, consumers, start):
            url = self.shards.urls[shard]
            seed = mix_seed(self.seed, p, shard)
            try:
                for position, (_, data) in enumerate(_shuffled(iter_samples(url), seed)):
                    if position < first or (position - first) % step:
                        continue
                    crop = self._crop(data, p, shard, position)
                    if crop is not None:
                        in_a_row = 0
                        yield crop
                        continue
                    in_a_row += 1
                    if in_a_row >= MAX_FAILED_IN_A_ROW:
                        raise AudioError(
                            f"{self.label}: {in_a_row} samples in a row failed to decode (last in "
                            f"{url}); check the shards"
                        )
            except (tarfile.TarError, OSError, EOFError) as err:
                self._failed(f"{url}: {err}; the rest of this shard is skipped")
                in_a_row += 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, done = (int(v) for v in self.position)
        # Batch j of an epoch comes from the stream ("role") j % workers. The DataLoader asks
        # its workers in turn from worker 0, so after `done` batches worker k plays role
        # (k + done) % workers, and the turns go on as in the uninterrupted epoch.
        role = (worker + done) % workers
        mine = (self.epoch_batches - role + workers - 1) // workers  # the role's batches
        done_here = max(0, (done - role + workers - 1) // workers)
        start = (epoch * mine + done_here) * self.batch_size
        wanted = (mine - done_here) * self.batch_size
        consumer = self.rank * workers + role
        stream = self._samples(consumer, self.world * workers, start)
        for _ in range(max(0, wanted)):
            yield next(stream)


class ShardLoader(DataLoader):
    """DataLoader of a :class:`ShardCropDataset` with Lightning's resume protocol.

    Args:
        dataset: the shard stream.
        position_fn: returns ``(epoch, batches of it trained)`` now (Lightning's own counters).
        **kwargs: DataLoader keyword arguments (``batch_size`` must be the dataset's).
    """

    def __init__(
        self, dataset: ShardCropDataset, position_fn: Callable[[], tuple[int, int]], **kwargs: Any
    ) -> None:
        super().__init__(dataset, **kwargs)
        self.position_fn = position_fn
        self._resume: int | None = None

    def __iter__(self) -> Iterator:
        epoch, done = self.position_fn()
        if self._resume is not None:  # the first iteration after a restore
            done, self._resume = self._resume, None
        else:
            done = 0
        self.dataset.position.copy_(torch.tensor([epoch, done]))
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        epoch, done = self.position_fn()
        return {"epoch": epoch, "consumed": done, "workers": self.num_workers}

    def load_state_dict(self, state: dict[str, int]) -> None:
        consumed = int(state.get("consumed", 0))
        self._resume = consumed if consumed < self.dataset.epoch_batches else 0
        if int(state.get("workers", self.num_workers)) != self.num_workers:
            log.warning(
                "the shard stream resumes with %d loader workers instead of %d: positions are "
                "recomputed for the new layout (see escx.data.shard_stream)",
                self.num_workers,
                state.get("workers"),
            )
