"""Large lists of audio files held as a few flat arrays instead of one Python object per file.

A million :class:`~escx.data.items.FileItem` objects cost about half a gigabyte, and every
data-loader worker touches their reference counts, which copies the pages the parent shared
with it (copy-on-write). :class:`PathColumn` keeps every path in one byte string with an offset
array, and :class:`AudioTable` adds each file's length: both pickle as a few buffers (cheap to
send to other ranks) and cost about the bytes of the paths plus 16 bytes per file.
"""

from __future__ import annotations

import os
import sys
from array import array
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from escx.data.items import FileItem, ProbedItem

# How the operating system turns file names into bytes and back (os.fsencode / os.fsdecode).
_ENCODING, _ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class PathColumn(Sequence[str]):
    """Strings (file paths) stored as one UTF-8 byte string plus offsets.

    Names that are not valid UTF-8 survive through ``os.fsencode``/``os.fsdecode``.
    """

    def __init__(self, blob: bytes | bytearray = b"", offsets: np.ndarray | None = None) -> None:
        self.blob = blob  # not copied: a million paths are tens of megabytes
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
        return self.blob[start:stop].decode(_ENCODING, _ERRORS)

    def __iter__(self) -> Iterator[str]:
        blob, bounds = self.blob, self.offsets.tolist()
        for start, stop in zip(bounds, bounds[1:]):  # noqa: B905 - offsets has len + 1 items
            yield blob[start:stop].decode(_ENCODING, _ERRORS)

    def same_as(self, other: PathColumn) -> bool:
        """Whether both hold the same strings in the same order (a byte comparison)."""
        return np.array_equal(self.offsets, other.offsets) and self.blob == other.blob

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
        """The column; the builder's buffers are handed over (build once)."""
        blob, self._blob = self._blob, bytearray()
        offsets, self._offsets = self._offsets, array("q", [0])
        return PathColumn(blob, np.frombuffer(offsets, dtype=np.int64))


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
