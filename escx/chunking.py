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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from escx.audio import AudioInfo, audio_info, read_audio
from escx.codecs.base import Codec

# Output handling lives in escx.files; these names stay importable from here.
from escx.files.audio_writer import AtomicAudioWriter  # noqa: F401
from escx.files.targets import check_output_path  # noqa: F401

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


# ---- files: windowed reading (writing is escx.files.audio_writer) ----------------------------


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
