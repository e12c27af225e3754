"""Bit packing of codes: each stream's codes at ``bits_per_code`` bits, MSB first.

Within a stream the codes are frame-major (all groups of frame 0, then frame 1, ...) and the
last byte is zero-padded (docs/bitstream.md).
"""

from __future__ import annotations

import numpy as np

from escx.bitstream.header import BitstreamError


def pack_streams(codes: np.ndarray, bits_per_code: int) -> np.ndarray:
    """The packed payload of every stream: uint8 of shape (streams, payload bytes).

    ``codes`` are integers of shape (streams, groups, frames), already checked to lie in
    ``0 .. 2**bits_per_code - 1``.
    """
    streams = codes.shape[0]
    # Frame-major within a stream: all groups of frame 0, then frame 1, ... (docs/bitstream.md).
    flat = np.ascontiguousarray(codes.transpose(0, 2, 1)).reshape(streams, -1).astype(">u2")
    bits = np.unpackbits(flat.view(np.uint8).reshape(streams, -1, 2), axis=2)  # (S, N, 16) MSB 1st
    bits = bits[:, :, 16 - bits_per_code :].reshape(streams, -1)
    return np.packbits(bits, axis=1)  # zero-pads each stream to a whole byte


def unpack_streams(payloads: np.ndarray, groups: int, frames: int, bits: int) -> np.ndarray:
    """Codes int64 of shape (streams, groups, frames) from payloads of shape (streams, bytes).

    Raises:
        BitstreamError: a stream's padding bits are not zero.
    """
    streams = payloads.shape[0]
    codes = np.empty((streams, groups * frames), np.int64)
    for k in range(streams):
        codes[k] = unpack_stream(payloads[k], groups * frames, bits)
    # Frame-major within a stream (docs/bitstream.md): (S, frames, groups) -> (S, groups, frames).
    codes = codes.reshape(streams, frames, groups)
    return np.ascontiguousarray(codes.transpose(0, 2, 1))


def unpack_stream(payload: np.ndarray, count: int, bits: int) -> np.ndarray:
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
