"""The ``.escx`` file format: a versioned, checksummed, truncatable container for codec codes.

A file is a 40-byte header (36 in version 1 files, which are still read) followed by one block
per stream, **coarsest stream first**. The header names the codec family that made the codes
(STFT codecs such as ESC, waveform codecs such as DAC), so a file is never decoded by a codec of
another family. Each block holds the codes of one stream bit-packed at ``bits_per_code`` bits
each, zero-padded to a whole byte, then a CRC32 of the block. All blocks of a file have the same
size, so the header alone gives the file size and ``header + first k blocks`` is the payload of a
k-stream file: lowering the bitrate (ESC's cross-scale RVQ and DAC's residual VQ decode any prefix
of streams, docs/esc.md §8) is a header rewrite plus a cut, never a re-encode. The byte layout,
bit order and versioning policy are in docs/bitstream.md; every reader error is a
:class:`BitstreamError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from escx.atomic import atomic_path

logger = logging.getLogger(__name__)

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
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER_BODY.size + _CRC.size
HEADER_SIZE_V1 = _HEADER_BODY_V1.size + _CRC.size
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
        return self.block_payload_bytes + _CRC.size

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
        size = layout.size + _CRC.size
        if len(data) < size:
            raise BitstreamError(
                f"truncated: file has {len(data)} bytes, shorter than the {size}-byte "
                "header; the file was cut short, compress again or re-copy it"
            )
        (stored_crc,) = _CRC.unpack_from(data, layout.size)
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
    return body + _CRC.pack(zlib.crc32(body))


def fingerprint_state_dict(state_dict: Mapping[str, Any]) -> bytes:
    """Hash a model's parameters into a ``FINGERPRINT_SIZE``-byte fingerprint.

    The hash (BLAKE2b) covers every entry's name, dtype, shape and raw values in sorted-name
    order, so two models differing in any parameter almost surely get different fingerprints,
    while the same weights always give the same one.

    Args:
        state_dict: ``model.state_dict()``; tensors, arrays or other values (hashed by ``repr``).

    Returns:
        ``FINGERPRINT_SIZE`` bytes to pass to :func:`encode_bitstream`.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"expected a state dict (mapping), got {type(state_dict).__name__}")
    digest = hashlib.blake2b(digest_size=FINGERPRINT_SIZE, person=b"escx-model")
    for name in sorted(state_dict):
        value = state_dict[name]
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            meta = f"{tensor.dtype}{tuple(tensor.shape)}"
            raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
        elif isinstance(value, np.ndarray):
            meta, raw = f"{value.dtype}{value.shape}", np.ascontiguousarray(value).tobytes()
        else:  # e.g. `_extra_state` entries
            meta, raw = type(value).__name__, repr(value).encode()
        for part in (name.encode(), meta.encode(), raw):
            digest.update(len(part).to_bytes(8, "little") + part)  # length-prefixed: unambiguous
    return digest.digest()


def encode_bitstream(
    codes: np.ndarray | torch.Tensor,
    *,
    sample_rate: int,
    num_samples: int,
    bits_per_code: int,
    fingerprint: bytes,
    codec_family: str = "stft",
) -> bytes:
    """Pack codes into an ``.escx`` file (the newest format version).

    Args:
        codes: integer codes of shape (streams, groups, frames), stream 0 the coarsest, each in
            ``0 .. 2**bits_per_code - 1``.
        sample_rate: audio sample rate in Hz.
        num_samples: length of the original audio in samples.
        bits_per_code: bits per code, log2 of the codebook size (1..16).
        fingerprint: model fingerprint from :func:`fingerprint_state_dict`.
        codec_family: the codec's ``family`` (:data:`CODEC_FAMILIES`).

    Returns:
        The file bytes: header, then one CRC-protected block per stream.

    Raises:
        BitstreamError: wrong shape or dtype, codes out of range, or header fields out of range.
    """
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 3:
        raise BitstreamError(f"codes must have shape (streams, groups, frames), got {codes.shape}")
    if codes.dtype == np.bool_ or not np.issubdtype(codes.dtype, np.integer):
        raise BitstreamError(f"codes must be integers, got dtype {codes.dtype}")
    streams, groups, frames = codes.shape
    header = EscxHeader(
        sample_rate, num_samples, streams, groups, bits_per_code, frames, fingerprint,
        codec_family=codec_family,
    )  # fmt: skip
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits_per_code):
        raise BitstreamError(
            f"codes out of range for bits_per_code={bits_per_code}: found values in "
            f"{codes.min()}..{codes.max()}, allowed 0..{2**bits_per_code - 1}; "
            "pass bits_per_code = log2(codebook size)"
        )
    # Frame-major within a stream: all groups of frame 0, then frame 1, ... (docs/bitstream.md).
    flat = np.ascontiguousarray(codes.transpose(0, 2, 1)).reshape(streams, -1).astype(">u2")
    bits = np.unpackbits(flat.view(np.uint8).reshape(streams, -1, 2), axis=2)  # (S, N, 16) MSB 1st
    bits = bits[:, :, 16 - bits_per_code :].reshape(streams, -1)
    packed = np.packbits(bits, axis=1)  # zero-pads each stream to a whole byte
    blocks = [header.to_bytes()]
    for k in range(streams):
        payload = packed[k].tobytes()
        blocks += [payload, _CRC.pack(_block_crc(k, payload))]
    return b"".join(blocks)


def read_header(data: bytes) -> EscxHeader:
    """Parse and verify the header of a complete file and check the file's length.

    Raises:
        BitstreamError: any header error, or a file shorter or longer than the header says.
    """
    header = EscxHeader.from_bytes(data)
    _check_size(header, len(data))
    return header


def _check_size(header: EscxHeader, size: int) -> None:
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


def decode_bitstream(
    data: bytes, *, expected_fingerprint: bytes | None = None
) -> tuple[EscxHeader, np.ndarray]:
    """Verify and unpack an ``.escx`` file.

    Args:
        data: the file bytes.
        expected_fingerprint: if given, the fingerprint of the model about to decode; a file made
            by another model is rejected instead of decoding to garbage.

    Returns:
        ``(header, codes)`` with codes int64 of shape (streams, groups, frames).

    Raises:
        BitstreamError: bad magic, newer version, checksum mismatch, truncation, fingerprint
            mismatch.
    """
    header = read_header(data)
    if expected_fingerprint is not None and header.fingerprint != expected_fingerprint:
        raise BitstreamError(
            f"made by a different model (fingerprint {header.fingerprint.hex()}, this model "
            f"{bytes(expected_fingerprint).hex()}); decompress with the model that compressed it"
        )
    payloads = np.frombuffer(_verified_payloads(data, header, header.num_streams), np.uint8)
    payloads = payloads.reshape(header.num_streams, header.block_payload_bytes)
    codes = np.empty((header.num_streams, header.codes_per_stream), np.int64)
    for k in range(header.num_streams):
        codes[k] = _unpack_stream(payloads[k], header.codes_per_stream, header.bits_per_code)
    # Frame-major within a stream (docs/bitstream.md): (S, frames, groups) -> (S, groups, frames).
    codes = codes.reshape(header.num_streams, header.num_frames, header.num_groups)
    return header, np.ascontiguousarray(codes.transpose(0, 2, 1))


def _unpack_stream(payload: np.ndarray, count: int, bits: int) -> np.ndarray:
    """``count`` codes of ``bits`` bits each, MSB first, from one block's packed bytes.

    Works in place of a (count, 16)-byte expansion: peak memory is ``count * bits`` bytes of bit
    values plus the int64 result, so decoding stays within a small multiple of the codes' size.
    """
    padding = payload.size * 8 - count * bits
    if padding and int(payload[-1]) & ((1 << padding) - 1):
        raise BitstreamError("corrupted: non-zero padding bits after the codes; file is damaged")
    flat = np.unpackbits(payload, count=count * bits)
    values = np.zeros(count, np.int64)
    for i in range(bits):
        values <<= 1
        values |= flat[i::bits]
    return values


def truncate_bitstream(data: bytes, streams: int) -> bytes:
    """Keep only the first (coarsest) ``streams`` streams of a file, without re-encoding.

    The result is the header with its stream count (and checksum) rewritten, followed by the first
    ``streams`` blocks unchanged: identical to encoding only those streams. The file keeps its
    format version (a version 1 file stays a valid version 1 file).

    Raises:
        BitstreamError: ``streams`` outside ``1..available``, or the input file is invalid.
    """
    header = read_header(data)
    if isinstance(streams, bool) or not isinstance(streams, int | np.integer):
        raise BitstreamError(f"streams must be an int, got {type(streams).__name__}")
    if not 1 <= streams <= header.num_streams:
        raise BitstreamError(
            f"cannot keep {streams} streams: the file has {header.num_streams}; "
            f"choose 1..{header.num_streams}"
        )
    kept = _verified_payloads(data, header, streams, keep_crc=True)
    return dataclasses.replace(header, num_streams=int(streams)).to_bytes() + kept


def write_escx(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a complete file or, on any failure, no new file.

    Writes a temporary file in the same directory, fsyncs it and renames it over ``path``, so a
    crash or full disk never leaves a partial ``.escx`` file (an existing file stays untouched).

    Raises:
        BitstreamError: ``data`` is not a valid ``.escx`` file.
        FileNotFoundError: the target directory does not exist.
    """
    read_header(data)  # refuse to write something that could not be read back
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist; create it first")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    logger.debug("wrote %d bytes to %s", len(data), path)


def read_escx(path: str | os.PathLike[str]) -> bytes:
    """Read the raw bytes of an ``.escx`` file (verify them with :func:`decode_bitstream`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path")
    return path.read_bytes()


def peek_header(path: str | os.PathLike[str]) -> EscxHeader:
    """Parse the header of an ``.escx`` file and check the file's size, without reading the rest.

    Raises:
        BitstreamError: any header error, or a file size other than the header's.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path")
    with open(path, "rb") as file:
        header = EscxHeader.from_bytes(file.read(HEADER_SIZE))
    _check_size(header, path.stat().st_size)
    return header


def _block_crc(stream: int, payload: bytes) -> int:
    # Seeded with the stream index so that reordered or duplicated blocks are detected too.
    return zlib.crc32(payload, zlib.crc32(bytes([stream])))


def _verified_payloads(
    data: bytes, header: EscxHeader, streams: int, keep_crc: bool = False
) -> bytes:
    """Check the CRC of the first ``streams`` blocks; return their payloads (with CRCs if asked)."""
    view, size, out = memoryview(data), header.block_payload_bytes, []
    for k in range(streams):
        start = header.header_size + k * header.block_bytes
        payload = view[start : start + size]
        (stored,) = _CRC.unpack_from(view, start + size)
        if _block_crc(k, payload) != stored:
            raise BitstreamError(
                f"corrupted: stream {k + 1} checksum mismatch; the file is damaged "
                f"(truncate_bitstream(data, {k}) keeps the intact coarser streams)"
                if k
                else "corrupted: stream 1 checksum mismatch; the file is damaged"
            )
        out.append(view[start : start + header.block_bytes] if keep_crc else payload)
    return b"".join(out)
