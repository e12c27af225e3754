"""Chunked encoding and decoding: bounded memory for long inputs, with inaudible seams.

A long input is cut into chunks of ``chunk_frames`` code frames. Each chunk is coded together with
``context_frames`` frames of real neighbouring audio (or codes) on each side and only the codes
(or samples) of its central part are kept. Every layer of ESC is local in time (4-patch Swin
windows shifted by 2, docs/esc.md §5; small convolutions in the patch (de-)embedding; the STFT), so
the model has a finite receptive field and a kept frame whose receptive field fits inside its
chunk's context is coded exactly as in whole-file coding. Measured on 60 s of speech with a
random-weight ESC-Base: 20 frames (0.4 s) of context already give bit-identical codes and audio;
ESC-Large has twice the Swin blocks, hence the default of 1 s (50 frames).

Chunk boundaries are multiples of ``align`` code frames. For ESC (2 time patches per code frame,
docs/esc.md §3) ``align = 2`` puts every boundary on a multiple of 4 time patches, so the (shifted)
4x4 attention windows of a chunk coincide with those of the whole file; the reflect padding of the
STFT and the Swin grid padding only touch the discarded context. Audio is zero-padded to whole
code frames exactly as :class:`~escx.codecs.stft_codec.STFTCodec` pads a whole file, so the last
chunk sees the same samples as whole-file coding does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from torch import Tensor

from escx.atomic import atomic_path
from escx.audio import AudioInfo, audio_info, read_audio
from escx.codecs.base import Codec

DEFAULT_CHUNK_SECONDS = 10.0
DEFAULT_CONTEXT_SECONDS = 1.0
DEFAULT_ALIGN = 2

AudioReader = Callable[[int, int], Tensor]
"""``read(start, stop) -> (B, n)`` samples ``start..stop-1`` (fewer where the input ends)."""


@dataclass(frozen=True)
class Chunk:
    """One chunk in code frames: ``[start, stop)`` is kept, ``[context_start, context_stop)`` coded.

    Attributes:
        start: first kept frame.
        stop: one past the last kept frame.
        context_start: first frame coded (``start`` minus the left context, at least 0).
        context_stop: one past the last frame coded.
    """

    start: int
    stop: int
    context_start: int
    context_stop: int

    @property
    def keep(self) -> slice:
        """The kept frames relative to ``context_start``."""
        return slice(self.start - self.context_start, self.stop - self.context_start)


def samples_per_frame(codec: Codec) -> int:
    """Samples per code frame (320 for ESC: 20 ms at 16 kHz)."""
    value = codec.sample_rate / codec.frame_rate
    if abs(value - round(value)) > 1e-6:
        raise ValueError(f"{type(codec).__name__} has a non-integer frame hop ({value} samples)")
    return round(value)


def frames_for_seconds(codec: Codec, seconds: float, align: int = DEFAULT_ALIGN) -> int:
    """Whole code frames in ``seconds``, rounded to a multiple of ``align`` (at least ``align``)."""
    frames = round(seconds * codec.frame_rate / align) * align
    return max(align, frames)


def plan_chunks(
    num_frames: int, chunk_frames: int, context_frames: int, align: int = DEFAULT_ALIGN
) -> list[Chunk]:
    """Split ``num_frames`` code frames into aligned chunks with context on each side.

    Args:
        num_frames: code frames of the whole input.
        chunk_frames: kept frames per chunk (a positive multiple of ``align``).
        context_frames: frames coded on each side and thrown away (a multiple of ``align``).
        align: chunk boundaries are multiples of this many frames.

    Returns:
        Chunks covering ``0..num_frames`` in order; one chunk without context when the input fits.
    """
    if align < 1 or chunk_frames < align or chunk_frames % align or context_frames % align:
        raise ValueError(
            f"chunk_frames ({chunk_frames}) must be a positive multiple of align ({align}) and "
            f"context_frames ({context_frames}) a non-negative multiple of it"
        )
    if context_frames < 0 or num_frames < 0:
        raise ValueError("num_frames and context_frames must be >= 0")
    chunks = []
    for start in range(0, max(num_frames, 1), chunk_frames):
        stop = min(start + chunk_frames, num_frames)
        lo, hi = max(0, start - context_frames), min(num_frames, stop + context_frames)
        chunks.append(Chunk(start, stop, lo, hi))
    return chunks


def _device(codec: Codec) -> torch.device:
    param = next(codec.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def tensor_reader(audio: Tensor) -> AudioReader:
    """A reader over an in-memory (B, L) or (L,) tensor."""
    audio = audio if audio.dim() == 2 else audio.unsqueeze(0)
    return lambda start, stop: audio[:, start:stop]


@torch.no_grad()
def encode_chunked(
    codec: Codec,
    read: AudioReader | Tensor,
    num_samples: int,
    n_streams: int,
    chunk_frames: int,
    context_frames: int,
    align: int = DEFAULT_ALIGN,
) -> Tensor:
    """Encode a long input chunk by chunk; peak memory is that of one chunk plus its context.

    Args:
        codec: the codec (its device is used for compute).
        read: audio (B, L) / (L,), or a reader ``read(start, stop) -> (B, n)`` for files.
        num_samples: input length L.
        n_streams: streams to encode.
        chunk_frames: kept code frames per chunk.
        context_frames: context frames on each side of a chunk.
        align: boundary alignment in frames (2 for ESC's Swin windows).

    Returns:
        Codes (B, n_streams, groups, frames) int64 on the CPU, ``frames = codec.num_frames(L)``.
    """
    if isinstance(read, Tensor):
        read = tensor_reader(read)
    spf = samples_per_frame(codec)
    num_frames = -(-num_samples // spf)
    device, pieces = _device(codec), []
    for chunk in plan_chunks(num_frames, chunk_frames, context_frames, align):
        lo, hi = chunk.context_start * spf, chunk.context_stop * spf
        audio = read(lo, min(hi, num_samples))
        audio = audio if audio.dim() == 2 else audio.unsqueeze(0)
        # Zero-pad the end like the codec pads a whole file (to whole code frames).
        audio = torch.nn.functional.pad(audio.float(), (0, hi - lo - audio.shape[-1]))
        codes = codec.encode(audio.to(device), n_streams)
        pieces.append(codes[..., chunk.keep].cpu())
    return torch.cat(pieces, dim=-1)


@torch.no_grad()
def decode_chunked(
    codec: Codec,
    codes: Tensor,
    length: int,
    chunk_frames: int,
    context_frames: int,
    align: int = DEFAULT_ALIGN,
    sink: Callable[[Tensor], None] | None = None,
) -> Tensor | None:
    """Decode codes chunk by chunk, keeping the central samples of each decoded chunk.

    Args:
        codec: the codec.
        codes: (B, streams, groups, frames).
        length: output length in samples (``codec.num_frames(length) == frames``).
        chunk_frames: kept code frames per chunk.
        context_frames: context frames on each side of a chunk.
        align: boundary alignment in frames.
        sink: if given, called with each (B, n) float32 CPU piece in order (for incremental
            writing) and nothing is returned.

    Returns:
        (B, length) float32 audio on the CPU, or None when ``sink`` is given.
    """
    spf = samples_per_frame(codec)
    if codes.dim() != 4 or codes.shape[-1] != -(-length // spf):
        raise ValueError(
            f"codes of shape {tuple(codes.shape)} cannot hold {length} samples "
            f"(expected (B, streams, groups, {-(-length // spf)}))"
        )
    device, pieces = _device(codec), []
    for chunk in plan_chunks(codes.shape[-1], chunk_frames, context_frames, align):
        part = codes[..., chunk.context_start : chunk.context_stop].to(device)
        audio = codec.decode(part, part.shape[-1] * spf)
        keep = chunk.keep
        piece = audio[:, keep.start * spf : keep.stop * spf]
        if chunk.stop * spf > length:  # the last chunk: trim the padding of the final frame
            piece = piece[:, : piece.shape[-1] - (chunk.stop * spf - length)]
        piece = piece.float().cpu()
        if sink is None:
            pieces.append(piece)
        else:
            sink(piece)
    return torch.cat(pieces, dim=-1) if sink is None else None


# ---- files: windowed reading and incremental, atomic writing ---------------------------------


def file_reader(path: str | os.PathLike, sample_rate: int) -> tuple[AudioReader, AudioInfo]:
    """A reader of windows of an audio file at ``sample_rate``, mono, plus the file's info.

    Each window decodes only the source samples it needs (plus the resampler's reach when the
    rate differs, see :func:`escx.audio.read_audio`), so reading an hour-long file chunk by chunk
    never holds it whole.

    Raises:
        AudioError: missing path, a directory, not audio, or zero-length audio (checked now);
            NaN or infinite samples (checked window by window while reading).
    """
    info = audio_info(path, sample_rate)

    def read(start: int, stop: int) -> Tensor:
        return read_audio(path, sample_rate, offset=start, num_frames=stop - start)[0][None]

    return read, info


def check_output_path(path: Path) -> None:
    """Raise a one-line OSError when ``path`` cannot be written (before any work is done)."""
    parent = path.parent
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    if not parent.exists():
        raise FileNotFoundError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: directory {parent} is not writable")


class AtomicAudioWriter:
    """Write mono audio piece by piece to a temporary file, renamed to ``path`` on success.

    Used as a context manager: on an exception the temporary file is removed and ``path`` is left
    as it was. 16-bit PCM; the container follows the extension (``.wav`` or ``.flac``).
    """

    FORMATS = {".wav": "WAV", ".flac": "FLAC"}

    def __init__(self, path: str | os.PathLike, sample_rate: int) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        suffix = self.path.suffix.lower()
        if suffix not in self.FORMATS:
            raise ValueError(f"cannot write {self.path}: use a .wav or .flac output name")
        self.format = self.FORMATS[suffix]
        self.frames = 0

    def __enter__(self) -> AtomicAudioWriter:
        check_output_path(self.path)
        self._output = atomic_path(self.path, self.path.suffix)
        self.tmp = self._output.__enter__()
        try:
            self.file = sf.SoundFile(
                self.tmp, "w", self.sample_rate, 1, "PCM_16", format=self.format
            )
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        return self

    def write(self, audio: Tensor) -> None:
        """Append samples: (1, n) or (n,) float, clipped to [-1, 1]."""
        samples = audio.detach().float().cpu().reshape(-1).clamp(-1.0, 1.0).numpy()
        try:
            self.file.write(samples)
        except sf.SoundFileRuntimeError as error:
            raise self._write_error(error) from None
        self.frames += samples.shape[0]

    def _write_error(self, error: Exception) -> OSError:
        # libsndfile reports a failed write (full disk, file-size limit) as "System error."
        detail = str(error).strip().splitlines()[0] if str(error).strip() else "write failed"
        return OSError(
            f"cannot write {self.path}: {detail.rstrip('.')} (is the disk full?); nothing was "
            "written, free some space or choose another output folder"
        )

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.file.close()
        except sf.SoundFileRuntimeError as error:
            failure = self._write_error(error)
            self._output.__exit__(type(failure), failure, None)
            raise failure from None
        except BaseException:
            self._output.__exit__(*sys.exc_info())
            raise
        self._output.__exit__(exc_type, exc, tb)
