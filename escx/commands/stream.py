"""``escx compress --stream`` and ``escx decompress --stream``: raw PCM <-> an escx stream.

``escx compress --stream --model CKPT`` reads raw mono PCM at the model's sample rate (16 kHz
for ESC; ``--pcm s16le`` or ``f32le``) from stdin and writes the streamable form of ``.escx``
(:mod:`escx.streaming.packets`) to stdout, one packet as soon as frames become final.
``escx decompress --stream --model CKPT`` reads such a stream and writes raw PCM to stdout as
samples become final (or a .wav/.flac file with ``-o``). A stream cut short decodes up to its
last whole packet; a damaged packet stops decoding there with one line and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from escx.commands.common import ArgumentParser, CommandError, add_precision_argument, say

if TYPE_CHECKING:
    from torch import Tensor

    from escx.api import CodecHandle
    from escx.files.audio_writer import AtomicAudioWriter
    from escx.streaming.packets import StreamHeader

PCM = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
READ_BYTES = 1 << 16  # at most this much is read at once; a pipe returns what it has


def _pcm_argument(parser: ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--pcm",
        choices=sorted(PCM),
        default="s16le",
        help=f"raw PCM {what}: 16-bit or 32-bit float little-endian mono (default s16le)",
    )


def _chunks(source: str) -> Iterator[bytes]:
    """Blocks of bytes from stdin (``-``) or a file, as they arrive."""
    if source == "-":
        fd, owned = sys.stdin.buffer.fileno(), None
    else:
        path = Path(source)
        if not path.is_file():
            raise CommandError(f"input not found or not a file: {source}")
        owned = open(path, "rb")  # noqa: SIM115 (closed below)
        fd = owned.fileno()
    try:
        while block := os.read(fd, READ_BYTES):
            yield block
    finally:
        if owned is not None:
            owned.close()


@contextlib.contextmanager
def _byte_output(target: str) -> Iterator[BinaryIO]:
    """stdout for ``-``; else a file written atomically (complete, or nothing on failure)."""
    if target == "-":
        yield sys.stdout.buffer
        return
    from escx.atomic import atomic_path
    from escx.files.targets import check_output_path

    check_output_path(Path(target))
    with atomic_path(Path(target)) as tmp, open(tmp, "wb") as file:
        yield file


def _samples(block: bytes, dtype: np.dtype) -> np.ndarray:
    """float32 samples of whole PCM samples (s16le scaled by 1/32768, as soundfile reads)."""
    values = np.frombuffer(block, dtype)
    if dtype.kind == "f":
        if not np.isfinite(values).all():
            raise CommandError("the input holds NaN or infinite samples; clean it first")
        return values.astype(np.float32)
    return values.astype(np.float32) / 32768.0


def compress_main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx compress",
        description="Compress raw PCM to an escx stream, writing packets as frames become final.",
    )
    parser.add_argument("--stream", action="store_true", required=True, help="streaming mode")
    parser.add_argument("input", nargs="?", default="-", help="raw PCM file, or - (stdin)")
    parser.add_argument("-o", "--output", default="-", help="stream file, or - (stdout)")
    parser.add_argument("--model", required=True, help="codec checkpoint (escx fit / convert)")
    parser.add_argument("--kbps", type=float, default=None, help="bitrate (default: highest)")
    parser.add_argument(
        "--packet-frames",
        type=int,
        default=1,
        help="code frames per packet, at most (default 1: a packet per frame, the lowest "
        "latency; each packet adds 8 bytes)",
    )
    _pcm_argument(parser, "input at the model's sample rate")
    add_precision_argument(parser)
    args = parser.parse_args(argv)

    import torch

    from escx.api import load_codec
    from escx.streaming import StreamEncoder
    from escx.streaming.packets import MAX_PACKET_FRAMES, PacketWriter, StreamHeader

    if not 1 <= args.packet_frames <= MAX_PACKET_FRAMES:
        raise CommandError(f"--packet-frames must be in 1..{MAX_PACKET_FRAMES}")
    handle = load_codec(args.model, precision=args.precision)
    encoder = StreamEncoder(handle, n_streams=handle.streams(args.kbps))
    codec = handle.codec
    writer = PacketWriter(
        StreamHeader(
            handle.sample_rate, codec.samples_per_frame, encoder.n_streams, codec.num_groups,
            codec.bits_per_code, handle.fingerprint, codec.family,
        ),
        args.packet_frames,
    )  # fmt: skip
    dtype, stray, size = PCM[args.pcm], b"", 0
    with _byte_output(args.output) as out:
        out.write(writer.start())
        out.flush()
        for block in _chunks(args.input):
            block = stray + block
            whole = len(block) - len(block) % dtype.itemsize
            block, stray = block[:whole], block[whole:]
            piece = torch.from_numpy(_samples(block, dtype))[None]
            data = writer.packets(encoder.push(piece)[0].cpu().numpy())
            if data:
                out.write(data)
                out.flush()
                size += len(data)
        if stray:
            raise CommandError(
                f"the input ends inside a sample ({len(stray)} stray bytes); raw {args.pcm} "
                f"PCM is {dtype.itemsize} bytes per sample"
            )
        if encoder.num_samples == 0:
            raise CommandError("the input holds no audio; pipe raw PCM into escx compress --stream")
        codes = encoder.flush()[0].cpu().numpy()
        data = writer.packets(codes, num_samples=encoder.num_samples)
        out.write(data)
        out.flush()
    seconds = encoder.num_samples / handle.sample_rate
    total = size + len(data) + len(writer.start())
    _report(
        f"compressed {seconds:.2f} s of audio into {writer.sequence} packets, {total:,} bytes "
        f"({total * 8 / max(seconds, 1e-9) / 1000:.2f} kbps with framing, nominal "
        f"{handle.kbps(encoder.n_streams):g}); look-ahead "
        f"{encoder.latency.ms(encoder.lookahead_samples):g} ms",
        args.output,
    )
    return 0


def _report(text: str, output: str) -> None:
    """The summary: on stdout, or on stderr when stdout carries the data."""
    if output == "-":
        sys.stderr.write(text + "\n")
    else:
        say(text)


def _check_header(header: StreamHeader, handle: CodecHandle) -> None:
    """Refuse a stream the model cannot decode, before any codes are used."""
    codec = handle.codec
    if header.codec_family != codec.family or header.fingerprint != handle.fingerprint:
        raise CommandError(
            f"the stream was made by a different model (fingerprint {header.fingerprint.hex()}, "
            f"this model {handle.fingerprint.hex()}); decompress with the model that compressed it"
        )
    layout = (handle.sample_rate, codec.samples_per_frame, codec.num_groups, codec.bits_per_code)
    stated = (header.sample_rate, header.samples_per_frame, header.num_groups, header.bits_per_code)
    if stated != layout or header.num_streams > codec.max_streams:
        raise CommandError(
            f"corrupted: the stream header's layout {stated} with {header.num_streams} streams "
            f"does not fit the model {layout} with up to {codec.max_streams}"
        )


class _PcmSink:
    """Raw PCM to a binary output (s16le through libsndfile's conversion, as .wav files get)."""

    def __init__(self, out: BinaryIO, pcm: str, sample_rate: int) -> None:
        self.out, self.pcm, self.sample_rate = out, pcm, sample_rate

    def write(self, audio: Tensor) -> None:
        """Append (1, n) float samples, clipped to [-1, 1]."""
        import io

        import soundfile as sf

        samples = audio.detach().float().cpu().reshape(-1).clamp(-1.0, 1.0).numpy()
        if not samples.size:
            return
        if self.pcm == "f32le":
            self.out.write(samples.astype("<f4").tobytes())
        else:
            raw = io.BytesIO()
            sf.write(raw, samples, self.sample_rate, "PCM_16", format="RAW", endian="LITTLE")
            self.out.write(raw.getvalue())
        self.out.flush()


@contextlib.contextmanager
def _audio_output(
    target: str, pcm: str, sample_rate: int
) -> Iterator[_PcmSink | AtomicAudioWriter]:
    """Raw PCM to stdout for ``-``; else a .wav/.flac file, written whole or not at all."""
    if target == "-":
        yield _PcmSink(sys.stdout.buffer, pcm, sample_rate)
        return
    from escx.files.audio_writer import AtomicAudioWriter

    with AtomicAudioWriter(Path(target), sample_rate) as writer:
        yield writer


def decompress_main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx decompress",
        description="Decompress an escx stream to raw PCM (or a .wav/.flac file) as samples "
        "become final; a stream cut short decodes up to its last whole packet.",
    )
    parser.add_argument("--stream", action="store_true", required=True, help="streaming mode")
    parser.add_argument("input", nargs="?", default="-", help="stream file, or - (stdin)")
    parser.add_argument("-o", "--output", default="-", help=".wav/.flac file, or - (raw PCM)")
    parser.add_argument("--model", required=True, help="the checkpoint that compressed it")
    _pcm_argument(parser, "output on stdout")
    add_precision_argument(parser)
    args = parser.parse_args(argv)

    import torch

    from escx.api import load_codec
    from escx.streaming import StreamDecoder
    from escx.streaming.packets import PacketReader

    handle = load_codec(args.model, precision=args.precision)
    decoder = StreamDecoder(handle)
    reader = PacketReader(on_header=lambda header: _check_header(header, handle))
    if args.output != "-" and Path(args.output).suffix.lower() not in (".wav", ".flac"):
        raise CommandError(
            f"-o {args.output}: give a .wav or .flac name, or - for raw PCM on stdout"
        )
    with _audio_output(args.output, args.pcm, handle.sample_rate) as sink:
        for block in _chunks(args.input):
            for packet in reader.feed(block):
                codes = torch.from_numpy(packet.codes)[None]
                if packet.last:
                    sink.write(decoder.flush(codes, packet.num_samples))
                else:
                    sink.write(decoder.push(codes))
        note = None
        if not reader.ended:
            if reader.header is None:
                raise CommandError("the stream ends inside its header; nothing to decode")
            if decoder.num_frames == 0:
                raise CommandError("the stream ends before its first packet; nothing to decode")
            sink.write(decoder.flush())
            note = (
                f"escx: warning: the stream was cut after packet {reader.sequence - 1} (its last "
                f"packet never came); decoded the {decoder.num_frames} frames it holds"
            )
    if note:
        sys.stderr.write(note + "\n")
    seconds = decoder.num_samples / handle.sample_rate
    _report(
        f"decompressed {reader.sequence} packets: {seconds:.2f} s of audio at "
        f"{handle.sample_rate} Hz to {'stdout' if args.output == '-' else args.output}",
        args.output,
    )
    return 0
