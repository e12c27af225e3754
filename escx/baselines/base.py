"""The interface of a classical reference codec: a waveform in, a decoded waveform and its payload
size out.

Classical codecs (Opus, Codec2) are not trained codecs: they have no streams, codes or weights,
so they do not implement :class:`escx.codecs.base.Codec`. They code one clip at a bitrate and
report what a bitrate comparison needs: the decoded audio aligned with the input, the payload
bytes (the real bitrate), the time taken, and the library version.
"""

from __future__ import annotations

import importlib.metadata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

BASELINES_INSTALL = 'pip install -c constraints.txt -e ".[baselines]"'


class BaselineUnavailable(ValueError):
    """A classical codec's library is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Coded:
    """One clip through a classical codec.

    Attributes:
        audio: decoded ``(L,)`` float32 at the codec's ``sample_rate``, time-aligned with the
            input (the codec's delay removed) and of the input's length.
        payload_bytes: bytes of the coded packets (no container), for the real bitrate.
        encode_seconds: time spent encoding.
        decode_seconds: time spent decoding.
        bandwidth: the audio bandwidth the coder used (``narrowband``: 4 kHz, ``wideband``:
            8 kHz; several joined by ``/`` when it switched within the clip).
    """

    audio: np.ndarray
    payload_bytes: int
    encode_seconds: float
    decode_seconds: float
    bandwidth: str


class ClassicalCodec(ABC):
    """A classical codec: :meth:`code` one clip at one of its bitrates.

    Subclasses set ``name`` (as given to ``escx eval --baseline``), ``bitrates`` (the kbps
    evaluated by default) and ``supported`` (every kbps they accept), and load their library in
    ``__init__``, raising :class:`BaselineUnavailable` when it is missing.
    """

    name: ClassVar[str]
    bitrates: ClassVar[tuple[float, ...]]
    supported: ClassVar[tuple[float, ...]]
    sample_rate: ClassVar[int] = 16000  # rate of the audio given to and returned by code()

    @abstractmethod
    def version(self) -> str:
        """The library versions that produced the result (e.g. ``libopus 1.3.1, opuslib 3.0.1``)."""

    @abstractmethod
    def describe(self) -> str:
        """One sentence on how the codec is run (mode, frames, bandwidth), for report captions."""

    @abstractmethod
    def _code(self, audio: np.ndarray, kbps: float) -> Coded:
        """Code a float32 ``(L,)`` clip with ``L > 0`` at a supported ``kbps``."""

    def code(self, audio: np.ndarray, kbps: float) -> Coded:
        """Encode and decode one clip.

        Args:
            audio: ``(L,)`` float samples at ``sample_rate``, nominally in [-1, 1] (clipped there,
                as a 16-bit file would be).
            kbps: one of ``supported``.

        Returns:
            The decoded clip, payload size, timings and bandwidth.

        Raises:
            ValueError: an unsupported bitrate, or audio that is not a non-empty 1-D array.
        """
        self.check(kbps)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"{self.name} codes (L,) clips with L > 0, got shape {audio.shape}")
        return self._code(np.clip(audio, -1.0, 1.0), kbps)

    def check(self, kbps: float) -> None:
        """Raise ValueError unless ``kbps`` is one of ``supported`` (the message lists them)."""
        if not any(abs(kbps - k) < 1e-9 for k in self.supported):
            choices = ", ".join(f"{k:g}" for k in self.supported)
            raise ValueError(f"{self.name} does not code at {kbps:g} kbps; choose from {choices}")

    def label(self, kbps: float) -> str:
        """Column label of a bitrate, e.g. ``opus 6 kbps``."""
        return f"{self.name} {kbps:g} kbps"


def package_version(distribution: str) -> str:
    """Installed version of a Python distribution, or ``?`` when its metadata is missing."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"
