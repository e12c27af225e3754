"""The streamable form of the ``.escx`` format: a stream header, then self-checking packets.

A file ``.escx`` (:mod:`escx.bitstream`) needs its length up front; a stream cannot know it. The
streamable form is a 32-byte stream header (the file header's fields that do not depend on the
length, plus the samples per frame) followed by packets, each carrying the codes of the frames
that became final, its sequence number and a CRC32 that also covers the stream header. The last
packet says it is the last and carries the stream's length in samples. A reader checks every
packet before its codes are used, so a stream cut anywhere decodes up to its last whole packet,
and a damaged, missing, reordered or foreign packet stops decoding there. The byte layout is in
docs/bitstream.md ("Streamable form").
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from escx.bitstream.header import CODEC_FAMILIES, FINGERPRINT_SIZE, BitstreamError

STREAM_MAGIC = b"ESCS"
STREAM_VERSION = 1
# Stream header: magic, version, bits_per_code, num_streams, num_groups, sample_rate,
# samples_per_frame, fingerprint, family id, 3 reserved zero bytes; then a CRC32 of them.
_HEADER = struct.Struct(f"<4sBBBBII{FINGERPRINT_SIZE}sB3s")
_CRC = struct.Struct("<I")
STREAM_HEADER_SIZE = _HEADER.size + _CRC.size
# Packet: frames (bit 15: the last packet), sequence number modulo 2^16; a last packet then has
# the stream's length in samples. The CRC also covers the full 64-bit packet index, so a packet
# from 65,536 packets earlier cannot pass for the one due.
_PACKET = struct.Struct("<HH")
_LENGTH = struct.Struct("<Q")
_INDEX = struct.Struct("<Q")
LAST_FLAG = 0x8000
# Frames in one packet, at most: 10 s at ESC's 50 frames/s. A reader refuses a larger count
# before it reads the payload, so a crafted packet cannot make it allocate more.
MAX_PACKET_FRAMES = 500
# Samples per frame a header may state (ESC: 320).
MAX_SAMPLES_PER_FRAME = 2**16


class PacketError(BitstreamError):
    """A stream header or packet is invalid (one-line message)."""


@dataclass(frozen=True)
class StreamHeader:
    """What every packet of a stream shares.

    Attributes:
        sample_rate: audio sample rate in Hz.
        samples_per_frame: audio samples per code frame (320 for ESC).
        num_streams: streams in every packet (1..255), coarsest first.
        num_groups: codes per stream and frame (1..255).
        bits_per_code: bits per code (1..16).
        fingerprint: the model's fingerprint (:func:`escx.bitstream.fingerprint_state_dict`).
        codec_family: the codec's family (:data:`escx.bitstream.CODEC_FAMILIES`).
    """

    sample_rate: int
    samples_per_frame: int
    num_streams: int
    num_groups: int
    bits_per_code: int
    fingerprint: bytes
    codec_family: str = "stft"

    def __post_init__(self) -> None:
        limits = {
            "sample_rate": (1, 2**32 - 1),
            "samples_per_frame": (1, MAX_SAMPLES_PER_FRAME),
            "num_streams": (1, 255),
            "num_groups": (1, 255),
            "bits_per_code": (1, 16),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise PacketError(f"{name} must be an int, got {type(value).__name__}")
            if not lo <= value <= hi:
                raise PacketError(f"{name}={value} is out of range; it must be in {lo}..{hi}")
        if not isinstance(self.fingerprint, bytes) or len(self.fingerprint) != FINGERPRINT_SIZE:
            raise PacketError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
        if self.codec_family not in CODEC_FAMILIES:
            raise PacketError(f"codec family {self.codec_family!r} has no id in the format")

    def to_bytes(self) -> bytes:
        """The 32-byte stream header."""
        body = _HEADER.pack(
            STREAM_MAGIC, STREAM_VERSION, self.bits_per_code, self.num_streams, self.num_groups,
            self.sample_rate, self.samples_per_frame, self.fingerprint,
            CODEC_FAMILIES.index(self.codec_family), bytes(3),
        )  # fmt: skip
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> StreamHeader:
        """Parse and verify a stream header (``STREAM_HEADER_SIZE`` bytes)."""
        data = bytes(data[:STREAM_HEADER_SIZE])
        if data[:4] != STREAM_MAGIC[: len(data)] or not data:
            what = "an .escx file, not a stream" if data[:4] == b"ESCX" else "not an escx stream"
            raise PacketError(f"{what} (bad magic bytes); pass what escx compress --stream wrote")
        if len(data) > 4 and data[4] > STREAM_VERSION:
            raise PacketError(
                f"made by a newer escx (stream version {data[4]}, this escx reads up to "
                f"{STREAM_VERSION}); upgrade escx to read it"
            )
        if len(data) < STREAM_HEADER_SIZE:
            raise PacketError(
                f"truncated: the stream has {len(data)} bytes, shorter than its "
                f"{STREAM_HEADER_SIZE}-byte header"
            )
        if zlib.crc32(data[: _HEADER.size]) != _CRC.unpack_from(data, _HEADER.size)[0]:
            raise PacketError("corrupted: stream header checksum mismatch; the stream is damaged")
        fields = _HEADER.unpack_from(data)
        _, version, bits, streams, groups, rate, spf, fingerprint, family, reserved = fields
        if version != STREAM_VERSION or reserved != bytes(3) or family >= len(CODEC_FAMILIES):
            raise PacketError("corrupted: invalid stream header (version, family or reserved)")
        try:
            return cls(rate, spf, streams, groups, bits, fingerprint, CODEC_FAMILIES[family])
        except PacketError as error:
            raise PacketError(f"corrupted: invalid stream header ({error})") from None

    @property
    def seed(self) -> int:
        """The header's CRC32, the starting value of every packet's CRC (ties packets to it).

        (Of the fields only: a CRC over data followed by its own CRC is the same constant for
        every header.)"""
        return zlib.crc32(self.to_bytes()[: _HEADER.size])

    def payload_bytes(self, frames: int) -> int:
        """Bytes of the packed codes of ``frames`` frames."""
        return (self.num_streams * self.num_groups * frames * self.bits_per_code + 7) // 8


@dataclass(frozen=True)
class Packet:
    """One packet's content.

    Attributes:
        sequence: its number, 0 for the first packet of a stream.
        codes: int64 codes (streams, groups, frames).
        num_samples: the stream's length in samples, on the last packet only (else None).
    """

    sequence: int
    codes: np.ndarray
    num_samples: int | None = None

    @property
    def last(self) -> bool:
        """Whether this packet ends its stream."""
        return self.num_samples is not None


def _pack(codes: np.ndarray, bits: int) -> bytes:
    """Codes (streams, groups, frames) -> bytes: stream by stream, frame-major, MSB first."""
    flat = np.ascontiguousarray(codes.transpose(0, 2, 1)).reshape(-1).astype(">u2")
    expanded = np.unpackbits(flat.view(np.uint8).reshape(-1, 2), axis=1)[:, 16 - bits :]
    return np.packbits(expanded.reshape(-1)).tobytes()


def _unpack(payload: bytes, shape: tuple[int, int, int], bits: int) -> np.ndarray:
    """Inverse of :func:`_pack`; raises PacketError for non-zero padding bits."""
    count = shape[0] * shape[1] * shape[2]
    raw = np.frombuffer(payload, np.uint8)
    padding = raw.size * 8 - count * bits
    if padding and int(raw[-1]) & ((1 << padding) - 1):
        raise PacketError("corrupted: non-zero padding bits in a packet; the stream is damaged")
    flat = np.unpackbits(raw, count=count * bits).reshape(count, bits)
    values = np.zeros(count, np.int64)
    for i in range(bits):
        values = (values << 1) | flat[:, i]
    streams, groups, frames = shape
    return np.ascontiguousarray(values.reshape(streams, frames, groups).transpose(0, 2, 1))


class PacketWriter:
    """Serialises a stream: :meth:`start` once, then :meth:`packets` for each batch of frames.

    Args:
        header: the stream header.
        max_frames: frames per packet, at most (1: a packet per 20 ms frame for ESC, the lowest
            latency; more amortise the 8 bytes of framing), up to ``MAX_PACKET_FRAMES``.
    """

    def __init__(self, header: StreamHeader, max_frames: int = MAX_PACKET_FRAMES) -> None:
        if isinstance(max_frames, bool) or not 1 <= max_frames <= MAX_PACKET_FRAMES:
            raise PacketError(f"frames per packet must be in 1..{MAX_PACKET_FRAMES}")
        self.max_frames = max_frames
        self.header = header
        self.sequence = 0
        self.frames = 0
        self._seed = header.seed

    def start(self) -> bytes:
        """The stream header's bytes."""
        return self.header.to_bytes()

    def packets(self, codes: np.ndarray, num_samples: int | None = None) -> bytes:
        """Packets for codes (streams, groups, frames), at most ``max_frames`` frames each.

        Args:
            codes: the frames that became final (any count; none gives no packet unless last).
            num_samples: the stream's length; given for the last call only, which ends the
                stream with a last packet (possibly without frames).
        """
        codes = np.asarray(codes)
        shape = (self.header.num_streams, self.header.num_groups)
        if codes.ndim != 3 or codes.shape[:2] != shape:
            raise PacketError(f"codes must have shape {(*shape, 'frames')}, got {codes.shape}")
        if codes.size and (codes.min() < 0 or codes.max() >= 2**self.header.bits_per_code):
            raise PacketError(f"codes out of range for {self.header.bits_per_code}-bit codes")
        out, total = [], codes.shape[-1]
        starts = list(range(0, total, self.max_frames)) or [0]
        for start in starts:
            part = codes[..., start : start + self.max_frames]
            last = num_samples is not None and start == starts[-1]
            if not part.shape[-1] and not last:
                continue
            out.append(self._packet(part, num_samples if last else None))
        return b"".join(out)

    def _packet(self, codes: np.ndarray, num_samples: int | None) -> bytes:
        frames = codes.shape[-1]
        if num_samples is not None:
            spf = self.header.samples_per_frame
            total = self.frames + frames
            if num_samples < 1 or -(-num_samples // spf) != total:
                raise PacketError(f"{total} frames cannot hold {num_samples} samples")
        flags = frames | (0 if num_samples is None else LAST_FLAG)
        body = _PACKET.pack(flags, self.sequence & 0xFFFF)
        if num_samples is not None:
            body += _LENGTH.pack(num_samples)
        body += _pack(codes, self.header.bits_per_code)
        crc = zlib.crc32(body, zlib.crc32(_INDEX.pack(self.sequence), self._seed))
        self.sequence += 1
        self.frames += frames
        return body + _CRC.pack(crc)


class PacketReader:
    """Parses a stream incrementally: :meth:`feed` bytes as they arrive, get whole packets.

    Every packet is checked (CRC, sequence number, frame count, padding, the last packet's
    length) before it is returned; the first bad one raises :class:`PacketError`. Bytes of an
    incomplete packet wait for the next :meth:`feed`.

    Args:
        on_header: called with the stream header as soon as it is parsed, before any packet
            (a decoder checks it against its model there, so a foreign header costs nothing).
    """

    def __init__(self, on_header: Callable[[StreamHeader], None] | None = None) -> None:
        self.on_header = on_header
        self.header: StreamHeader | None = None
        self.sequence = 0  # the next packet's expected number
        self.frames = 0  # frames in the packets returned
        self.ended = False
        self._pending = bytearray()
        self._seed = 0

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole packet (yet)."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[Packet]:
        """Take the next bytes of the stream; return the packets they complete."""
        self._pending += data
        packets = []
        if self.header is None:
            if len(self._pending) < STREAM_HEADER_SIZE:
                if self._pending and self._pending[:4] != STREAM_MAGIC[: len(self._pending)]:
                    StreamHeader.from_bytes(bytes(self._pending))  # raises: bad magic
                return packets
            header = StreamHeader.from_bytes(bytes(self._pending))
            if self.on_header is not None:
                self.on_header(header)
            self.header, self._seed = header, header.seed
            del self._pending[:STREAM_HEADER_SIZE]
        while self._pending:
            if self.ended:
                raise PacketError(
                    f"corrupted: {len(self._pending)} bytes after the last packet; the stream is "
                    "damaged"
                )
            packet = self._next()
            if packet is None:
                break
            packets.append(packet)
        return packets

    def _next(self) -> Packet | None:
        header, data = self.header, self._pending
        if len(data) < _PACKET.size:
            return None
        flags, sequence = _PACKET.unpack_from(data)
        last, frames = bool(flags & LAST_FLAG), flags & ~LAST_FLAG
        where = f"packet {self.sequence}"
        if frames > MAX_PACKET_FRAMES:
            raise PacketError(
                f"corrupted: {where} claims {frames} frames (at most {MAX_PACKET_FRAMES})"
            )
        head = _PACKET.size + (_LENGTH.size if last else 0)
        size = head + header.payload_bytes(frames) + _CRC.size
        if len(data) < size:
            return None
        body = bytes(data[: size - _CRC.size])
        if sequence != self.sequence & 0xFFFF:
            raise PacketError(
                f"corrupted: packet {sequence} where packet {self.sequence & 0xFFFF} was due (a "
                "packet is missing, repeated or out of order)"
            )
        crc = zlib.crc32(body, zlib.crc32(_INDEX.pack(self.sequence), self._seed))
        if crc != _CRC.unpack_from(data, size - _CRC.size)[0]:
            raise PacketError(f"corrupted: {where} checksum mismatch; the stream is damaged")
        num_samples = _LENGTH.unpack_from(data, _PACKET.size)[0] if last else None
        shape = (header.num_streams, header.num_groups, frames)
        codes = _unpack(body[head:], shape, header.bits_per_code)
        total = self.frames + frames
        if num_samples is not None and (
            num_samples < 1 or -(-num_samples // header.samples_per_frame) != total
        ):
            raise PacketError(f"corrupted: {total} frames cannot hold {num_samples} samples")
        del data[:size]
        self.sequence += 1
        self.frames = total
        self.ended = num_samples is not None
        return Packet(sequence, codes, num_samples)
