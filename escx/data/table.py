"""Large lists of audio files held as a few flat arrays instead of one Python object per file.

A million :class:`~escx.data.items.FileItem` objects cost about half a gigabyte, and every
data-loader worker touches their reference counts, which copies the pages the parent shared
with it (copy-on-write). :class:`PathColumn` keeps every path in one byte string with an offset
array, and :class:`AudioTable` adds each file's length: both pickle as a few buffers (cheap to
send to other ranks) and cost about the bytes of the paths plus 16 bytes per file.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from escx.data.items import FileItem, ProbedItem


class PathColumn(Sequence[str]):
    """Strings (file paths) stored as one UTF-8 byte string plus offsets.

    Names that are not valid UTF-8 survive through ``os.fsencode``/``os.fsdecode``.
    """

    def __init__(self, blob: bytes = b"", offsets: np.ndarray | None = None) -> None:
        self.blob = bytes(blob)
        self.offsets = np.zeros(1, dtype=np.int64) if offsets is None else offsets

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> PathColumn:
        builder = PathColumnBuilder()
        for text in strings:
            builder.append(text)
        return builder.build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        start, stop = self.offsets[index], self.offsets[index + 1]
        return os.fsdecode(self.blob[start:stop])

    def __iter__(self) -> Iterator[str]:
        blob, bounds, decode = self.blob, self.offsets.tolist(), os.fsdecode
        for start, stop in zip(bounds, bounds[1:]):  # noqa: B905 - offsets has len + 1 items
            yield decode(blob[start:stop])

    def take(self, indices: Iterable[int]) -> PathColumn:
        """A new column holding the entries at ``indices``, in that order."""
        builder = PathColumnBuilder()
        blob, offsets = self.blob, self.offsets.tolist()
        for index in np.asarray(indices, dtype=np.int64).tolist():
            builder.append_bytes(blob[offsets[index] : offsets[index + 1]])
        return builder.build()

    @property
    def nbytes(self) -> int:
        return len(self.blob) + self.offsets.nbytes


class PathColumnBuilder:
    """Collects strings for a :class:`PathColumn` without a Python object per string."""

    def __init__(self) -> None:
        self._blob = bytearray()
        self._offsets = array("q", [0])

    def append(self, text: str) -> None:
        self.append_bytes(os.fsencode(text))

    def append_bytes(self, data: bytes) -> None:
        self._blob += data
        self._offsets.append(len(self._blob))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def build(self) -> PathColumn:
        return PathColumn(bytes(self._blob), np.frombuffer(self._offsets, dtype=np.int64).copy())


class AudioTable(Sequence[ProbedItem]):
    """Usable audio files with their lengths: what the training datasets need of a source.

    Indexing gives a :class:`~escx.data.items.ProbedItem` made on the fly, so the datasets read
    a table exactly as they read the list :func:`~escx.data.items.probe_items` returns.

    Args:
        paths: the files.
        frames: their lengths in samples at the rate the data is read at, shape (N,) int64.
    """

    def __init__(self, paths: PathColumn, frames: np.ndarray) -> None:
        if len(paths) != len(frames):
            raise ValueError(f"{len(paths)} paths but {len(frames)} lengths")
        self.paths = paths
        self.frames = np.asarray(frames, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ProbedItem:  # type: ignore[override]
        return ProbedItem(FileItem(self.paths[index]), int(self.frames[index]), None)

    def __iter__(self) -> Iterator[ProbedItem]:
        for index in range(len(self)):
            yield self[index]

    @property
    def nbytes(self) -> int:
        return self.paths.nbytes + self.frames.nbytes


def as_probed(files: AudioTable | Sequence[ProbedItem]) -> AudioTable | list[ProbedItem]:
    """A table stays a table; anything else becomes a list."""
    return files if isinstance(files, AudioTable) else list(files)
