"""Write mono 16-bit audio piece by piece: atomically to a file, directly to a FIFO or device.

A regular file (or a symbolic link's target) is written to a temporary file renamed into place at
the end (:mod:`escx.atomic`), so a failure leaves the old file or nothing. A FIFO or character
device is written in place as the pieces come, so ``-o /dev/null`` discards the audio and a FIFO
feeds a player while decoding goes on. libsndfile cannot write WAV into a pipe (it seeks back to
fill in the sizes), so WAV into a FIFO or device is a stream: a 44-byte header whose sizes say
"unknown length" (0xFFFFFFFF, what sox and ffmpeg write into pipes), then the samples. FLAC
streams natively.
"""

from __future__ import annotations

import io
import os
import struct
import sys
from pathlib import Path
from typing import Any, BinaryIO

import soundfile as sf
from torch import Tensor

from escx.atomic import atomic_path
from escx.files.targets import check_output_path

FORMATS = {".wav": "WAV", ".flac": "FLAC"}
_UNKNOWN_SIZE = 0xFFFFFFFF


def wav_stream_header(sample_rate: int, channels: int = 1, bits: int = 16) -> bytes:
    """A PCM WAV header for a stream of unknown length (RIFF and data sizes 0xFFFFFFFF)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )


def _errno_reason() -> str | None:
    """The system's reason for libsndfile's last failure ("System error." says nothing)."""
    ffi = getattr(sf, "_ffi", None)
    code = getattr(ffi, "errno", 0) if ffi is not None else 0
    return os.strerror(code) if code else None


def _clear_errno() -> None:
    ffi = getattr(sf, "_ffi", None)
    if ffi is not None:
        ffi.errno = 0


class AtomicAudioWriter:
    """Write mono audio piece by piece to ``path`` (see the module docstring for what happens).

    Used as a context manager: on an exception a regular output is left as it was (the temporary
    file is removed); a FIFO or device has received the pieces written so far. 16-bit PCM; the
    container follows the extension (``.wav`` or ``.flac``; WAV for a FIFO or device with another
    name).
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.target = check_output_path(self.path)
        suffix = self.path.suffix.lower()
        if suffix not in FORMATS and not self.target.direct:
            raise ValueError(f"cannot write {self.path}: use a .wav or .flac output name")
        self.format = FORMATS.get(suffix, "WAV")
        self.frames = 0
        self.file: sf.SoundFile | None = None
        self.stream: BinaryIO | None = None

    def __enter__(self) -> AtomicAudioWriter:
        if self.target.direct and self.format == "WAV":
            try:
                self.stream = open(self.path, "wb")  # noqa: SIM115 (closed in __exit__)
                self.stream.write(wav_stream_header(self.sample_rate))
            except OSError as error:
                self._close_quietly()
                raise self._os_error(error) from None
            return self
        self._output = atomic_path(self.path, self.path.suffix)
        self.tmp = self._output.__enter__()
        try:
            _clear_errno()
            self.file = sf.SoundFile(
                self.tmp, "w", self.sample_rate, 1, "PCM_16", format=self.format
            )
        except sf.LibsndfileError as error:
            failure = self._write_error(error)
            self._output.__exit__(type(failure), failure, None)
            raise failure from None
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, audio: Tensor) -> None:
        """Append samples: (1, n) or (n,) float, clipped to [-1, 1]."""
        samples = audio.detach().float().cpu().reshape(-1).clamp(-1.0, 1.0).numpy()
        if self.stream is not None:
            # libsndfile converts, as for a file (its rounding differs between builds).
            pcm = io.BytesIO()
            sf.write(pcm, samples, self.sample_rate, "PCM_16", format="RAW", endian="LITTLE")
            try:
                self.stream.write(pcm.getvalue())
            except OSError as error:
                raise self._os_error(error) from None
        else:
            try:
                _clear_errno()
                self.file.write(samples)
            except sf.SoundFileRuntimeError as error:
                raise self._write_error(error) from None
        self.frames += samples.shape[0]

    def _os_error(self, error: OSError) -> OSError:
        reason = error.strerror or str(error) or type(error).__name__
        return OSError(f"cannot write {self.path}: {reason}")

    def _write_error(self, error: Exception) -> OSError:
        # libsndfile reports a failed write (full disk, file-size limit) as "System error."; the
        # C library's errno says which.
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "write failed"
        reason = _errno_reason() or f"{detail.rstrip('.')} (is the disk full?)"
        if self.target.direct:
            return OSError(f"cannot write {self.path}: {reason}")
        return OSError(
            f"cannot write {self.path}: {reason}; nothing was written, free some space or "
            "choose another output folder"
        )

    def _close_quietly(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError:  # the error already being raised says why
                pass

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self.file is None:  # a WAV stream into a FIFO or device
            if exc_type is not None:
                self._close_quietly()
                return
            stream, self.stream = self.stream, None
            try:
                stream.close()  # flushes: a full device fails here
            except OSError as error:
                raise self._os_error(error) from None
            return
        try:
            _clear_errno()
            self.file.close()
        except sf.SoundFileRuntimeError as error:
            failure = self._write_error(error)
            self._output.__exit__(type(failure), failure, None)
            raise failure from None
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        self._output.__exit__(exc_type, exc, tb)
