"""Audio items (a file, encoded bytes or decoded samples) and the one-time check of a source.

Every source (folder, manifest, Hugging Face dataset) becomes a list of :class:`AudioItem`; the
datasets only need ``info`` (header) and ``read`` (a window of samples). :func:`probe_items` checks
every item's header once at setup, drops the unusable ones with a single counted warning, and
raises a clear error when nothing usable is left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning_utilities.core.rank_zero import rank_zero_only
from torch import Tensor

from escx.audio import AudioError, AudioInfo, audio_info, decode_array, read_audio

log = logging.getLogger(__name__)


class NoUsableAudioError(ValueError):
    """A data source holds no readable, non-empty audio."""


def log_once_per_process(level: int, message: str) -> None:
    """Log on global rank 0 only, so DDP runs print a data notice once rather than per rank."""
    # Lightning sets `rank` on this shared object (it is absent until lightning is imported).
    if getattr(rank_zero_only, "rank", 0) == 0:
        log.log(level, message)


def show_data_notices() -> None:
    """Show escx.data's INFO lines (the data index's summary, a long scan's progress) on stderr
    in a training run, as Lightning shows its own, unless the program configured logging."""
    logger = logging.getLogger("escx.data")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


class AudioItem:
    """One piece of audio in a source.

    Attributes:
        name: what messages call it (a path, or ``dataset[row]``).
        duration: length in seconds when the source states it (manifests), else None.
    """

    name: str = "<audio>"
    duration: float | None = None

    def info(self, sample_rate: int) -> AudioInfo:
        """Header information (fast); raises :class:`~escx.audio.AudioError` when unusable."""
        raise NotImplementedError

    def read(self, sample_rate: int, offset: int = 0, num_frames: int | None = None) -> Tensor:
        """Samples ``[offset, offset + num_frames)`` at ``sample_rate``: mono float32 (L,)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class FileItem(AudioItem):
    """An audio file on disk."""

    def __init__(self, path: str | os.PathLike, duration: float | None = None) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.duration = duration

    def info(self, sample_rate: int) -> AudioInfo:
        return audio_info(self.path, sample_rate)

    def read(self, sample_rate: int, offset: int = 0, num_frames: int | None = None) -> Tensor:
        return read_audio(self.path, sample_rate, offset, num_frames)[0]


class BytesItem(AudioItem):
    """The encoded bytes of an audio file (e.g. a Hugging Face row with ``Audio(decode=False)``)."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def info(self, sample_rate: int) -> AudioInfo:
        return audio_info(self.data, sample_rate)

    def read(self, sample_rate: int, offset: int = 0, num_frames: int | None = None) -> Tensor:
        return read_audio(self.data, sample_rate, offset, num_frames)[0]


class ArrayItem(AudioItem):
    """Already decoded samples, shape (L,) or (L, C), with their rate."""

    def __init__(self, name: str, array: np.ndarray, sample_rate: int) -> None:
        self.name = name
        self.array = np.asarray(array, dtype=np.float32)
        self.sample_rate = int(sample_rate)

    def info(self, sample_rate: int) -> AudioInfo:
        frames = self.array.shape[0] if self.array.ndim else 0
        channels = self.array.shape[1] if self.array.ndim == 2 else 1
        if frames == 0:
            raise AudioError(f"{self.name} is empty (zero-length audio); remove it")
        return AudioInfo(self.sample_rate, channels, frames, sample_rate, "array", self.name)

    def read(self, sample_rate: int, offset: int = 0, num_frames: int | None = None) -> Tensor:
        audio = decode_array(self.array, self.sample_rate, sample_rate, self.name)
        return audio[offset : None if num_frames is None else offset + num_frames]


@dataclass(frozen=True)
class ProbedItem:
    """An item that passed the check, with its length at the dataset's sample rate.

    Attributes:
        item: the audio item.
        frames: its length in samples at the dataset's rate (from the header or the manifest).
        info: its header, or None when the length came from a manifest's ``duration``.
    """

    item: AudioItem
    frames: int
    info: AudioInfo | None


def probe_items(
    items: Sequence[AudioItem],
    sample_rate: int,
    label: str,
    hint: str = "check the path and the files",
    limit: int | None = None,
) -> list[ProbedItem]:
    """Check every item once and keep the usable ones, in order.

    Items whose source states a duration (manifests) are trusted without opening the file, which
    keeps setup fast on large manifests; a failure later is handled by the datasets.

    Args:
        items: candidates from a source.
        sample_rate: the rate the dataset reads at (lengths are counted at this rate).
        label: the source's name for messages, e.g. ``"data/train"``.
        hint: what to do when nothing is usable, appended to the error.
        limit: stop once this many usable items are found (the rest are not checked).

    Returns:
        The usable items with their lengths.

    Raises:
        NoUsableAudioError: no item is usable.
    """
    if len(items) > 5000:
        log_once_per_process(logging.INFO, f"{label}: checking {len(items)} audio headers")
    usable: list[ProbedItem] = []
    failures: list[str] = []
    converted = 0
    for item in items:
        if limit is not None and len(usable) >= limit:
            break
        if item.duration is not None and item.duration > 0:
            usable.append(ProbedItem(item, round(item.duration * sample_rate), None))
            continue
        try:
            info = item.info(sample_rate)
        except AudioError as err:
            failures.append(str(err))
            continue
        converted += info.resampled or info.downmixed
        usable.append(ProbedItem(item, info.target_frames, info))
    if not usable:
        raise NoUsableAudioError(
            f"no usable audio in {label}: 0 of {len(items)} files readable"
            + (f" (first: {failures[0]})" if failures else "")
            + f"; {hint}"
        )
    if failures:
        log_once_per_process(
            logging.WARNING,
            f"{label}: skipped {len(failures)} of {len(usable) + len(failures)} files "
            f"(unreadable or empty): first: {failures[0]}",
        )
    if converted:
        log_once_per_process(
            logging.INFO,
            f"{label}: {converted} of {len(usable)} files are not {sample_rate} Hz mono and are "
            "converted on every read; `python -m escx.data.prepare --source DIR` converts once",
        )
    return usable
