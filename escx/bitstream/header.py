"""The ``.escx`` header: byte layout, field limits, codec families, packing and parsing.

A header is the magic ``ESCX``, the fields of :data:`_LAYOUT` in that order, then a CRC32 of all
of them: 40 bytes in version 2, 36 in version 1 (no codec family). It alone gives the size of the
whole file (:attr:`EscxHeader.file_size`), so :func:`read_header` also checks a file's length.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"ESCX"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
FINGERPRINT_SIZE = 8
# Codec families by their id in the header (version 2 on); version 1 files are all "stft". An id
# is never reused; a new family appends one.
CODEC_FAMILIES = ("stft", "waveform")
# Header: magic, these fields in this order, then a CRC32 of all of them. Version 1 stops after
# the fingerprint (36 bytes); version 2 adds the codec family and 3 reserved zero bytes (40 bytes,
# so that 10 s at 9 kbps, 11,250 payload bytes plus 6 block CRCs, still fits 11,314 bytes).
_LAYOUT = ("version", "bits_per_code", "num_streams", "num_groups", "sample_rate", "num_samples")
_LAYOUT += ("num_frames", "fingerprint", "family_id", "reserved")
_HEADER_BODY = struct.Struct(f"<4sBBBBIQI{FINGERPRINT_SIZE}sB3s")
_HEADER_BODY_V1 = struct.Struct(f"<4sBBBBIQI{FINGERPRINT_SIZE}s")
CRC = struct.Struct("<I")  # a little-endian CRC32: ends the header and every stream block
HEADER_SIZE = _HEADER_BODY.size + CRC.size
HEADER_SIZE_V1 = _HEADER_BODY_V1.size + CRC.size
_LIMITS = {  # field -> (min, max) allowed by the layout
    "bits_per_code": (1, 16),
    "num_streams": (1, 255),
    "num_groups": (1, 255),
    "sample_rate": (1, 2**32 - 1),
    "num_samples": (0, 2**64 - 1),
    "num_frames": (0, 2**32 - 1),
}


class BitstreamError(ValueError):
    """An ``.escx`` file or its inputs are invalid (bad magic, checksum, truncation, ...)."""


@dataclass(frozen=True)
class EscxHeader:
    """Fixed-size header of an ``.escx`` file (little-endian, see docs/bitstream.md).

    Attributes:
        sample_rate: audio sample rate in Hz.
        num_samples: length of the original audio in samples (the decoder trims to it).
        num_streams: number of stream blocks that follow (1..255), coarsest first.
        num_groups: product-VQ groups per stream and frame (1..255).
        bits_per_code: bits per code, log2 of the codebook size (1..16).
        num_frames: codec frames per stream.
        fingerprint: ``FINGERPRINT_SIZE`` bytes identifying the model that made the codes.
        version: format version: ``FORMAT_VERSION`` is written; version 1 files are still read.
        codec_family: the family of the codec that made the codes, one of
            :data:`CODEC_FAMILIES` ("stft" for ESC, "waveform" for DAC); always "stft" in
            version 1, which has no such field.
    """

    sample_rate: int
    num_samples: int
    num_streams: int
    num_groups: int
    bits_per_code: int
    num_frames: int
    fingerprint: bytes
    version: int = FORMAT_VERSION
    codec_family: str = "stft"

    def __post_init__(self) -> None:
        for name, (lo, hi) in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise BitstreamError(f"{name} must be an int, got {type(value).__name__}")
            if not lo <= value <= hi:
                raise BitstreamError(f"{name}={value} is out of range; it must be in {lo}..{hi}")
            object.__setattr__(self, name, int(value))  # numpy ints -> plain ints
        if not isinstance(self.fingerprint, bytes) or len(self.fingerprint) != FINGERPRINT_SIZE:
            raise BitstreamError(
                f"fingerprint must be {FINGERPRINT_SIZE} bytes, got {self.fingerprint!r}; "
                "compute it with fingerprint_state_dict(model.state_dict())"
            )
        if self.version not in SUPPORTED_VERSIONS:
            raise BitstreamError(f"version must be one of {SUPPORTED_VERSIONS}, got {self.version}")
        if self.codec_family not in CODEC_FAMILIES:
            raise BitstreamError(
                f"codec family {self.codec_family!r} has no id in the .escx format; known: "
                f"{', '.join(CODEC_FAMILIES)}"
            )
        if self.version == 1 and self.codec_family != "stft":
            raise BitstreamError("version 1 files hold only the stft codec family; use version 2")

    @property
    def header_size(self) -> int:
        """Bytes of this version's header (36 in version 1, 40 from version 2)."""
        return HEADER_SIZE_V1 if self.version == 1 else HEADER_SIZE

    @property
    def codes_per_stream(self) -> int:
        """Codes in one stream block (groups x frames)."""
        return self.num_groups * self.num_frames

    @property
    def block_payload_bytes(self) -> int:
        """Bytes of packed codes in one stream block (padded to a whole byte)."""
        return (self.codes_per_stream * self.bits_per_code + 7) // 8

    @property
    def block_bytes(self) -> int:
        """Bytes of one stream block: packed codes plus its 4-byte CRC32."""
        return self.block_payload_bytes + CRC.size

    @property
    def file_size(self) -> int:
        """Exact size in bytes of a complete file with this header."""
        return self.header_size + self.num_streams * self.block_bytes

    def to_bytes(self) -> bytes:
        """Serialise to exactly ``header_size`` bytes (fields, then CRC32 of the fields)."""
        fields = {name: getattr(self, name) for name in _LAYOUT[:8]}
        fields.update(family_id=CODEC_FAMILIES.index(self.codec_family), reserved=bytes(3))
        return pack_header(fields)

    @classmethod
    def from_bytes(cls, data: bytes) -> EscxHeader:
        """Parse and verify the header at the start of ``data`` (may be a whole file).

        Raises:
            BitstreamError: bad magic, newer or invalid version, truncated header, checksum
                mismatch or invalid field values.
        """
        data = bytes(data[:HEADER_SIZE])
        if not data:
            raise BitstreamError("not an .escx file (it is empty); pass a file made by escx")
        if data[:4] != MAGIC[: len(data)]:
            raise BitstreamError("not an .escx file (bad magic bytes); pass a file made by escx")
        if len(data) > 4 and data[4] > FORMAT_VERSION:
            raise BitstreamError(
                f"made by a newer escx (format version {data[4]}, this escx reads up to "
                f"{FORMAT_VERSION}); upgrade escx to read it"
            )
        layout = _HEADER_BODY_V1 if len(data) > 4 and data[4] == 1 else _HEADER_BODY
        size = layout.size + CRC.size
        if len(data) < size:
            raise BitstreamError(
                f"truncated: file has {len(data)} bytes, shorter than the {size}-byte "
                "header; the file was cut short, compress again or re-copy it"
            )
        (stored_crc,) = CRC.unpack_from(data, layout.size)
        if zlib.crc32(data[: layout.size]) != stored_crc:
            raise BitstreamError("corrupted: header checksum mismatch; the file is damaged")
        fields = dict(zip(_LAYOUT, layout.unpack_from(data)[1:], strict=False))
        family_id, reserved = fields.pop("family_id", 0), fields.pop("reserved", bytes(3))
        if reserved != bytes(3):
            raise BitstreamError("corrupted: invalid header (reserved bytes are not zero)")
        if family_id >= len(CODEC_FAMILIES):
            raise BitstreamError(
                f"made by a codec family this escx does not know (id {family_id}; it knows "
                f"{', '.join(CODEC_FAMILIES)}); upgrade escx to read it"
            )
        try:
            return cls(**fields, codec_family=CODEC_FAMILIES[family_id])
        except BitstreamError as err:
            raise BitstreamError(f"corrupted: invalid header ({err})") from None


def pack_header(fields: dict[str, Any]) -> bytes:
    """Header bytes of raw field values with their CRC, unchecked (``version`` picks the layout:
    version 1 ignores ``family_id`` and ``reserved``). :meth:`EscxHeader.to_bytes` validates
    first; tests use this to build headers no valid :class:`EscxHeader` has."""
    layout = _HEADER_BODY_V1 if fields["version"] == 1 else _HEADER_BODY
    names = _LAYOUT[:8] if fields["version"] == 1 else _LAYOUT
    body = layout.pack(MAGIC, *(fields[name] for name in names))
    return body + CRC.pack(zlib.crc32(body))


def read_header(data: bytes) -> EscxHeader:
    """Parse and verify the header of a complete file and check the file's length.

    Raises:
        BitstreamError: any header error, or a file shorter or longer than the header says.
    """
    header = EscxHeader.from_bytes(data)
    check_file_size(header, len(data))
    return header


def check_file_size(header: EscxHeader, size: int) -> None:
    """Raise BitstreamError unless a file of ``size`` bytes is exactly what ``header`` says."""
    if size < header.file_size:
        whole = max(0, (size - header.header_size) // header.block_bytes)
        raise BitstreamError(
            f"truncated: header says {header.num_streams} streams ({header.file_size} bytes) but "
            f"the file has {size} bytes ({whole} complete streams); re-copy the file, or "
            "use truncate_bitstream on the complete file to drop streams"
        )
    if size > header.file_size:
        raise BitstreamError(
            f"corrupted: {size - header.file_size} unexpected bytes after the last stream "
            f"(expected {header.file_size} bytes); the file is damaged"
        )
