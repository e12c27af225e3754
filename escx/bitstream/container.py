"""Whole ``.escx`` files in memory: codes to bytes, bytes to codes, and dropping streams.

A file is its header (:mod:`escx.bitstream.header`) followed by one block per stream
(:mod:`escx.bitstream.blocks`) holding that stream's packed codes (:mod:`escx.bitstream.packing`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from escx.bitstream.blocks import block_crc, verified_payloads
from escx.bitstream.header import CRC, BitstreamError, EscxHeader, read_header
from escx.bitstream.packing import pack_streams, unpack_streams


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
        fingerprint: model fingerprint from :func:`~escx.bitstream.fingerprint_state_dict`.
        codec_family: the codec's ``family`` (:data:`~escx.bitstream.CODEC_FAMILIES`).

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
    packed = pack_streams(codes, bits_per_code)
    blocks = [header.to_bytes()]
    for k in range(streams):
        payload = packed[k].tobytes()
        blocks += [payload, CRC.pack(block_crc(k, payload))]
    return b"".join(blocks)


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
    payloads = np.frombuffer(verified_payloads(data, header, header.num_streams), np.uint8)
    payloads = payloads.reshape(header.num_streams, header.block_payload_bytes)
    codes = unpack_streams(payloads, header.num_groups, header.num_frames, header.bits_per_code)
    return header, codes


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
    kept = verified_payloads(data, header, streams, keep_crc=True)
    return dataclasses.replace(header, num_streams=int(streams)).to_bytes() + kept
