"""Torch datasets of fixed-length mono segments: random crops for training, fixed ones for eval.

ESC trains on 3-s clips with the last 80 samples dropped, i.e. 47 920 samples at 16 kHz, which is
what its STFT/patch grid accepts and reconstructs exactly (docs/esc.md §2 "train clip", §13.7); that
is the default segment length here. Every item is a float32 tensor of shape (L,), so the default
collate gives (B, L) batches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from escx.audio import AudioError
from escx.data.items import AudioItem, ProbedItem, probe_items
from escx.data.table import AudioTable

log = logging.getLogger(__name__)

ESC_SEGMENT_SAMPLES = 47_920  # 3 s at 16 kHz minus one 80-sample hop (docs/esc.md §2, §13.7)


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers (seed, epoch, index...)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)[0])


def fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad at the end or cut to exactly ``length`` samples; shape (L,) -> (length,)."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))


def _segment_samples(segment_samples: int | None, segment_seconds: float | None, sr: int):
    if segment_seconds is not None:
        segment_samples = round(segment_seconds * sr)
    if segment_samples is not None and segment_samples <= 0:
        raise ValueError(f"segment length must be positive, got {segment_samples} samples")
    return segment_samples


# A read that fails tries the next files; this many failures in a row mean the data is gone
# (a moved corpus, an unmounted disk), which one clear error says better than a silent search
# through a million missing files.
MAX_FAILED_IN_A_ROW = 100


def _report_failure(label: str, failures: int, error: AudioError) -> None:
    """First failure in full, then a running count at 10, 100, 1000, ... (per worker)."""
    if failures == 1:
        log.warning("%s: %s; using another file instead (failures are counted)", label, error)
    elif math.log10(failures).is_integer():
        log.warning("%s: %d files unreadable so far in this loader process; last: %s", label,
                    failures, error)  # fmt: skip


class _ProbedDataset(Dataset):
    """Checks its items once; reads fall back to the next file if one breaks after the check.

    ``items`` may also be an :class:`~escx.data.table.AudioTable`, already checked (a data
    index or a manifest that states lengths): it is used as it is.
    """

    def __init__(
        self,
        items: Sequence[AudioItem] | AudioTable,
        sample_rate: int,
        label: str,
        hint: str,
        limit: int | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.label = label
        if isinstance(items, AudioTable):
            self.files: Sequence[ProbedItem] = items
        else:
            self.files = probe_items(items, sample_rate, label, hint, limit)
        self._failed: set[int] = set()

    def _read(self, index: int, offset: int, num_frames: int | None) -> torch.Tensor:
        """Read a window of file ``index``; a file that fails now (deleted, changed or damaged
        since it was checked) is skipped, counted, and replaced by the next one."""
        in_a_row = 0
        for step in range(len(self.files)):
            i = (index + step) % len(self.files)
            if i in self._failed:
                continue
            try:
                return self.files[i].item.read(self.sample_rate, offset, num_frames)
            except AudioError as err:
                self._failed.add(i)  # per worker process: counted once per file and worker
                _report_failure(self.label, len(self._failed), err)
                offset = 0
                in_a_row += 1
                if in_a_row >= MAX_FAILED_IN_A_ROW:
                    raise AudioError(
                        f"{self.label}: {in_a_row} files in a row failed to read (last: {err}); "
                        "the data changed since it was checked: check that it is still there"
                    ) from None
        raise AudioError(f"{self.label}: every file failed to read; check the data")


class RandomCropDataset(_ProbedDataset):
    """Training set: one random segment of each file per epoch, zero-padded if the file is short.

    The crop of file ``i`` in epoch ``e`` comes from a generator seeded with ``(seed, e, i)``, so it
    does not depend on worker count or order, and changes every epoch. Indices may be plain ints
    (epoch from :meth:`set_epoch`) or ``(index, epoch)`` pairs from :class:`EpochShuffleSampler`,
    which carries the epoch into worker processes (also persistent ones).

    Args:
        items: audio items (see :mod:`escx.data.sources`), or an already checked
            :class:`~escx.data.table.AudioTable`.
        segment_samples: crop length in samples (default: ESC's 47 920).
        sample_rate: rate the audio is read at.
        seed: base seed of the crops.
        segment_seconds: crop length in seconds; overrides ``segment_samples`` when given.
        label: name used in messages.
        hint: what to do when no file is usable.
    """

    def __init__(
        self,
        items: Sequence[AudioItem] | AudioTable,
        segment_samples: int = ESC_SEGMENT_SAMPLES,
        sample_rate: int = 16000,
        seed: int = 53,
        segment_seconds: float | None = None,
        label: str = "training data",
        hint: str = "check the path",
    ) -> None:
        super().__init__(items, sample_rate, label, hint)
        self.segment_samples = _segment_samples(segment_samples, segment_seconds, sample_rate)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain-int indices."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        """A crop of shape (segment_samples,), float32."""
        index, epoch = index if isinstance(index, tuple) else (index, self.epoch)
        spare = self.files[index].frames - self.segment_samples
        offset = 0
        if spare > 0:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, index))
            offset = int(torch.randint(0, spare + 1, (1,), generator=gen))
        audio = self._read(index, offset, self.segment_samples)
        return fit_length(audio, self.segment_samples)


class FixedSegmentDataset(_ProbedDataset):
    """Validation/test set: the same segments every time.

    Each file gives its first ``max_segments_per_file`` consecutive segments (at least one; a
    short file gives one zero-padded segment). With ``segment_samples=None`` each item is a whole
    file, so lengths differ and the loader needs ``batch_size=1``.

    Args:
        items: audio items.
        segment_samples: segment length in samples, or None for whole files.
        sample_rate: rate the audio is read at.
        max_segments_per_file: cap on segments per file; None cuts every file completely.
        max_files: use only the first this many usable files (in source order).
        label: name used in messages.
        hint: what to do when no file is usable.
    """

    def __init__(
        self,
        items: Sequence[AudioItem],
        segment_samples: int | None = ESC_SEGMENT_SAMPLES,
        sample_rate: int = 16000,
        max_segments_per_file: int | None = 1,
        max_files: int | None = None,
        label: str = "evaluation data",
        hint: str = "check the path",
    ) -> None:
        if max_files is not None and max_files <= 0:
            raise ValueError(f"max_files must be positive or None, got {max_files}")
        # Only the first `max_files` usable files are checked (large eval sources stay fast).
        super().__init__(items, sample_rate, label, hint, limit=max_files)
        self.segment_samples = _segment_samples(segment_samples, None, sample_rate)
        self.segments: list[tuple[int, int]] = []
        for i, f in enumerate(self.files):
            if self.segment_samples is None:
                self.segments.append((i, 0))
                continue
            count = max(1, f.frames // self.segment_samples)
            if max_segments_per_file is not None:
                count = min(count, max_segments_per_file)
            self.segments.extend((i, k * self.segment_samples) for k in range(count))

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Segment ``index``, shape (segment_samples,) or (file length,), float32."""
        file, offset = self.segments[index]
        audio = self._read(file, offset, self.segment_samples)
        return audio if self.segment_samples is None else fit_length(audio, self.segment_samples)


class EpochShuffleSampler(Sampler):
    """Shuffles indices with a generator seeded from ``(seed, epoch)`` and yields ``(i, epoch)``.

    Lightning calls :meth:`set_epoch` at every epoch start, also through the wrapper it adds for
    DDP (which gives each rank its share of this same permutation), so the order and the crops are
    reproducible from the seed alone.
    """

    def __init__(self, size: int, seed: int = 53, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = range(self.size)
        return iter([(i, self.epoch) for i in order])


class StreamingCropDataset(IterableDataset):
    """Training crops from a streaming Hugging Face dataset (no length known, read once each).

    The stream is shuffled with a buffer (seeded), split across DDP ranks, and split across
    DataLoader workers by ``datasets`` itself. Each row gives one random crop, seeded from
    ``(seed, epoch, rank, worker, position)``. Rows that cannot be decoded are skipped with one
    warning per worker and epoch.

    Args:
        dataset: a ``datasets.IterableDataset`` from :func:`escx.data.hf.open_hf_dataset`.
        audio_column: its audio column.
        segment_samples: crop length in samples.
        sample_rate: rate the audio is read at.
        seed: shuffling and crop seed.
        shuffle_buffer: rows held for shuffling.
        rank: this process's DDP rank.
        world_size: number of DDP processes.
        label: name used in messages.
    """

    def __init__(
        self,
        dataset,
        audio_column: str = "audio",
        segment_samples: int = ESC_SEGMENT_SAMPLES,
        sample_rate: int = 16000,
        seed: int = 53,
        shuffle_buffer: int = 1000,
        rank: int = 0,
        world_size: int = 1,
        label: str = "streaming data",
    ) -> None:
        from datasets.distributed import split_dataset_by_node

        if shuffle_buffer > 1:
            dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer)
        if world_size > 1:
            dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
        self.dataset, self.audio_column, self.label = dataset, audio_column, label
        self.segment_samples, self.sample_rate, self.seed = segment_samples, sample_rate, seed
        self.rank, self.epoch = rank, 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (shared with persistent workers by ``datasets``)."""
        self.epoch = epoch
        self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[torch.Tensor]:
        from escx.data.hf import iter_items

        worker = get_worker_info()
        wid = worker.id if worker is not None else 0
        epoch = int(self.dataset.epoch)  # shared with persistent workers, unlike self.epoch
        failures: list[str] = []
        n = -1
        for n, item in enumerate(iter_items(self.dataset, self.audio_column, self.label)):
            try:
                audio = item.read(self.sample_rate)
            except AudioError as err:
                failures.append(str(err))
                continue
            spare = audio.shape[-1] - self.segment_samples
            offset = 0
            if spare > 0:
                gen = torch.Generator().manual_seed(mix_seed(self.seed, epoch, self.rank, wid, n))
                offset = int(torch.randint(0, spare + 1, (1,), generator=gen))
            yield fit_length(audio[offset : offset + self.segment_samples], self.segment_samples)
        if failures:
            log.warning(
                "%s: skipped %d of %d rows (unreadable or empty): first: %s",
                self.label,
                len(failures),
                n + 1,
                failures[0],
            )
