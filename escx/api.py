"""Using a trained codec: load a checkpoint, code tensors, compress and decompress files.

Trained (``escx fit``) and converted (``escx convert``) models share one checkpoint format: a
torch file holding ``state_dict`` (the codec's tensors under ``codec.``; other keys of a Lightning
checkpoint, such as discriminators or optimizer states, are ignored) and ``escx`` with
``codec_config`` (the codec's ``class_path``/``init_args``) and ``sample_rate``. Example::

    import escx
    handle = escx.load_codec("model.ckpt")
    codes = handle.encode(audio, kbps=6.0)            # (B, 4, 3, frames) int64
    audio_hat = handle.decode(codes, audio.shape[-1])  # (B, L)
    handle.compress("speech.flac", "speech.escx", kbps=6.0)
    handle.decompress("speech.escx", "speech.wav")

Long inputs are coded in chunks (:mod:`escx.chunking`), files are read in windows and written
incrementally, so memory stays bounded for hours of audio.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from escx.bitstream import (
    BitstreamError,
    EscxHeader,
    decode_bitstream,
    encode_bitstream,
    fingerprint_state_dict,
    peek_header,
    read_escx,
    read_header,
    write_escx,
)
from escx.checkpoint import (
    CheckpointError,
    build_from_config,
    read_checkpoint,
    save_codec_checkpoint,
)
from escx.chunking import (
    DEFAULT_ALIGN,
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_CONTEXT_SECONDS,
    AtomicAudioWriter,
    check_output_path,
    decode_chunked,
    encode_chunked,
    file_reader,
    frames_for_seconds,
)
from escx.codecs.base import Codec, check_precision

logger = logging.getLogger(__name__)

__all__ = ["CheckpointError", "CodecHandle", "FileResult", "load_codec", "save_codec_checkpoint"]


class CodecHandle:
    """A codec ready for inference, with its sample rate and fingerprint.

    Args:
        codec: the codec (put in eval mode here).
        fingerprint: model fingerprint written into ``.escx`` files (default: computed from the
            codec's state dict).
        path: checkpoint it came from, for messages.
        chunk_seconds: kept audio per chunk when coding long inputs.
        context_seconds: context coded on each side of a chunk and thrown away.
    """

    def __init__(
        self,
        codec: Codec,
        fingerprint: bytes | None = None,
        path: str | os.PathLike | None = None,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    ) -> None:
        self.codec = codec.eval()
        self.sample_rate = int(codec.sample_rate)
        self.fingerprint = fingerprint or fingerprint_state_dict(codec.state_dict())
        self.path = Path(path) if path is not None else None
        self.align = DEFAULT_ALIGN
        self.chunk_frames = frames_for_seconds(codec, chunk_seconds, self.align)
        self.context_frames = (
            frames_for_seconds(codec, context_seconds, self.align) if context_seconds > 0 else 0
        )

    def __repr__(self) -> str:
        name = self.path.name if self.path else type(self.codec).__name__
        return f"CodecHandle({name}, {self.sample_rate} Hz, up to {self.max_kbps:g} kbps)"

    @property
    def device(self) -> torch.device:
        """Device of the codec's parameters."""
        param = next(self.codec.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def max_kbps(self) -> float:
        """Highest bitrate (all streams)."""
        return self.codec.bitrate(self.codec.max_streams) / 1000

    def kbps(self, n_streams: int) -> float:
        """Nominal bitrate of ``n_streams`` streams in kbps."""
        return self.codec.bitrate(n_streams) / 1000

    def streams(self, kbps: float | None = None, n_streams: int | None = None) -> int:
        """Stream count for a bitrate or an explicit count (default: all streams).

        Raises:
            ValueError: a bitrate that is not a whole number of streams, or too many streams.
        """
        if n_streams is not None:
            if kbps is not None:
                raise ValueError("pass either kbps or n_streams, not both")
            if isinstance(n_streams, bool) or not 1 <= int(n_streams) <= self.codec.max_streams:
                raise ValueError(
                    f"n_streams must be in 1..{self.codec.max_streams}, got {n_streams}"
                )
            return int(n_streams)
        if kbps is None:
            return self.codec.max_streams
        return self.codec.streams_for_kbps(float(kbps))

    def num_frames(self, length: int) -> int:
        """Code frames for ``length`` samples."""
        return self.codec.num_frames(length)

    def encode(
        self, audio: Tensor, kbps: float | None = None, n_streams: int | None = None
    ) -> Tensor:
        """Encode audio at the codec's sample rate (chunked when long).

        Args:
            audio: (L,) or (B, L) waveform.
            kbps: bitrate (a multiple of the per-stream rate, 1.5 kbps for ESC); default: the
                highest (9 kbps for ESC).
            n_streams: stream count instead of ``kbps``.

        Returns:
            Codes (B, streams, groups, frames) int64 on the CPU.
        """
        streams = self.streams(kbps, n_streams)
        audio = _check_waveform(audio)
        return encode_chunked(
            self.codec,
            audio,
            audio.shape[-1],
            streams,
            self.chunk_frames,
            self.context_frames,
            self.align,
        )

    def decode(self, codes: Tensor, length: int) -> Tensor:
        """Decode codes (B, streams, groups, frames), or (streams, groups, frames), to (B, length).

        The first ``streams`` streams are used, so a prefix of the codes decodes at a lower
        bitrate.
        """
        codes = torch.as_tensor(codes)
        if codes.dim() == 3:
            codes = codes.unsqueeze(0)
        if codes.dim() == 4 and codes.shape[1] > self.codec.max_streams:
            raise ValueError(
                f"codes have {codes.shape[1]} streams, the model has {self.codec.max_streams}"
            )
        self.codec.check_codes(codes, length)
        return decode_chunked(
            self.codec, codes.long(), length, self.chunk_frames, self.context_frames, self.align
        )

    def compress(
        self,
        in_path: str | os.PathLike,
        out_path: str | os.PathLike,
        kbps: float | None = None,
        n_streams: int | None = None,
    ) -> FileResult:
        """Compress an audio file to an ``.escx`` file.

        The file is read in windows (resampled to the codec rate and down-mixed to mono where
        needed; :attr:`FileResult.notice` says so), encoded chunk by chunk and written atomically.

        Raises:
            AudioError: missing, unreadable, empty or non-finite audio.
            OSError / CheckpointError: the output cannot be written.
        """
        streams = self.streams(kbps, n_streams)
        out_path = Path(out_path)
        _check_distinct(in_path, out_path)
        check_output_path(out_path)
        read, info = file_reader(in_path, self.sample_rate)
        length = info.target_frames
        codes = encode_chunked(
            self.codec, read, length, streams, self.chunk_frames, self.context_frames, self.align
        )
        data = self.pack(codes[0], length)
        write_escx(out_path, data)
        return FileResult(
            Path(in_path), out_path, length / self.sample_rate, len(data), streams, info.notice()
        )

    def pack(self, codes: Tensor, num_samples: int) -> bytes:
        """The ``.escx`` bytes of one item's codes (streams, groups, frames)."""
        return encode_bitstream(
            codes,
            sample_rate=self.sample_rate,
            num_samples=num_samples,
            bits_per_code=self.codec.bits_per_code,
            fingerprint=self.fingerprint,
            codec_family=self.codec.family,
        )

    def check_header(self, header: EscxHeader) -> None:
        """Raise BitstreamError unless an ``.escx`` header fits this model (checked before any
        codes are read: the layout, the stream count, and frames against samples)."""
        if header.codec_family != self.codec.family:
            raise BitstreamError(
                f"made by a {header.codec_family} codec, this model ({type(self.codec).__name__}) "
                f"is a {self.codec.family} codec; decompress with the model that compressed it"
            )
        if header.fingerprint != self.fingerprint:
            raise BitstreamError(
                f"made by a different model (fingerprint {header.fingerprint.hex()}, this model "
                f"{self.fingerprint.hex()}); decompress with the model that compressed it"
            )
        layout = (self.sample_rate, self.codec.num_groups, self.codec.bits_per_code)
        if (header.sample_rate, header.num_groups, header.bits_per_code) != layout:
            raise BitstreamError(
                f"corrupted: the header's layout ({header.sample_rate} Hz, {header.num_groups} "
                f"groups of {header.bits_per_code}-bit codes) does not match the model "
                f"({layout[0]} Hz, {layout[1]} groups of {layout[2]}-bit codes)"
            )
        if header.num_samples == 0 or header.num_frames != self.num_frames(header.num_samples):
            raise BitstreamError(
                f"corrupted: {header.num_frames} frames cannot hold {header.num_samples} samples"
            )
        if header.num_streams > self.codec.max_streams:
            raise BitstreamError(
                f"corrupted: {header.num_streams} streams, the model has {self.codec.max_streams}"
            )

    def read(self, path: str | os.PathLike) -> tuple[EscxHeader, Tensor]:
        """Verify an ``.escx`` file against this model and unpack it: the header (and the file
        size it implies) is checked before the rest of the file is read."""
        self.check_header(peek_header(path))
        return self.unpack(read_escx(path))

    def unpack(self, data: bytes) -> tuple[EscxHeader, Tensor]:
        """Verify ``.escx`` bytes against this model; returns the header and codes (1, S, G, T).

        Raises:
            BitstreamError: corrupt or truncated file, another model, or a mismatched layout.
        """
        # Everything the header says is checked against the model before the codes are
        # unpacked, so a crafted header cannot make the decoder allocate more than a real file.
        self.check_header(read_header(data))
        header, codes = decode_bitstream(data, expected_fingerprint=self.fingerprint)
        return header, torch.from_numpy(codes).unsqueeze(0)

    def decompress(self, in_path: str | os.PathLike, out_path: str | os.PathLike) -> FileResult:
        """Decompress an ``.escx`` file to 16-bit audio (``.wav`` or ``.flac``) at the codec rate.

        The model fingerprint in the file must match this model. Audio is decoded chunk by chunk
        and written incrementally to a temporary file that is renamed into place at the end.

        Raises:
            BitstreamError: corrupt, truncated or newer file, or made by another model.
            OSError: missing input, or the output cannot be written.
        """
        in_path, out_path = Path(in_path), Path(out_path)
        _check_distinct(in_path, out_path)
        if in_path.is_dir():
            raise IsADirectoryError(f"{in_path} is a directory; expected an .escx file")
        header, codes = self.read(in_path)
        check_output_path(out_path)
        with AtomicAudioWriter(out_path, self.sample_rate) as writer:
            decode_chunked(
                self.codec,
                codes,
                header.num_samples,
                self.chunk_frames,
                self.context_frames,
                self.align,
                sink=writer.write,
            )
        seconds = header.num_samples / self.sample_rate
        return FileResult(in_path, out_path, seconds, in_path.stat().st_size, header.num_streams)


@dataclass(frozen=True)
class FileResult:
    """What :meth:`CodecHandle.compress` / :meth:`CodecHandle.decompress` did.

    Attributes:
        input: source file.
        output: written file.
        seconds: audio duration.
        num_bytes: size of the ``.escx`` file.
        streams: streams coded.
        notice: conversion done on reading (resampling, down-mix), or None.
    """

    input: Path
    output: Path
    seconds: float
    num_bytes: int
    streams: int
    notice: str | None = None

    @property
    def kbps(self) -> float:
        """Effective bitrate of the ``.escx`` file, container overhead included."""
        return self.num_bytes * 8 / self.seconds / 1000 if self.seconds else 0.0


def _check_distinct(in_path: str | os.PathLike, out_path: Path) -> None:
    if out_path.exists() and out_path.resolve() == Path(in_path).resolve():
        raise ValueError(f"the output {out_path} is the input file; choose another output path")


def _check_waveform(audio: Tensor) -> Tensor:
    audio = torch.as_tensor(audio)
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[-1] == 0 or audio.shape[0] == 0:
        raise ValueError(
            f"audio must have shape (L,) or (B, L) with L > 0, got {tuple(audio.shape)}; "
            "down-mix channels first"
        )
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples; clean the input first")
    return audio.float()


def load_codec(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    context_seconds: float = DEFAULT_CONTEXT_SECONDS,
    precision: str = "fp32",
) -> CodecHandle:
    """Load a trained or converted codec checkpoint for inference.

    Args:
        path: ``.ckpt`` from ``escx fit`` or ``escx convert``.
        device: where the codec runs ("cpu", "cuda", ...).
        chunk_seconds: chunk length for long inputs.
        context_seconds: context on each side of a chunk.
        precision: "fp32" (default, exact) or "bf16" (faster; codes may differ from fp32's).

    Returns:
        A :class:`CodecHandle` in eval mode.

    Raises:
        CheckpointError: missing, corrupt or incompatible checkpoint (one-line message).
    """
    check_precision(precision)
    state, meta = read_checkpoint(path)
    codec = build_from_config(meta["codec_config"], str(path))
    try:
        codec.load_state_dict(state, strict=True)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:300]
        raise CheckpointError(f"{path}: weights do not fit the codec config ({detail})") from None
    codec = codec.to(device).eval().set_inference_precision(precision)
    rate = meta.get("sample_rate", codec.sample_rate)
    if int(rate) != int(codec.sample_rate):
        raise CheckpointError(
            f"{path}: escx.sample_rate {rate} differs from the codec's {codec.sample_rate} Hz"
        )
    handle = CodecHandle(
        codec, path=path, chunk_seconds=chunk_seconds, context_seconds=context_seconds
    )
    stored = meta.get("fingerprint")
    if stored is not None and stored != handle.fingerprint.hex():
        raise CheckpointError(
            f"{path}: the weights do not match the fingerprint stored with them; the file is "
            "damaged, copy or convert it again"
        )
    logger.info("loaded %r", handle)
    return handle
