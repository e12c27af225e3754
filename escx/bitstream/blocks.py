"""Stream blocks: each stream's packed codes followed by a CRC32 seeded with its index.

Blocks follow the header coarsest first, all of one size, so block ``k`` starts at
``header_size + k * block_bytes``.
"""

from __future__ import annotations

import zlib

from escx.bitstream.header import CRC, BitstreamError, EscxHeader


def block_crc(stream: int, payload: bytes) -> int:
    """The CRC32 of stream ``stream``'s block ``payload``."""
    # Seeded with the stream index so that reordered or duplicated blocks are detected too.
    return zlib.crc32(payload, zlib.crc32(bytes([stream])))


def verified_payloads(
    data: bytes, header: EscxHeader, streams: int, keep_crc: bool = False
) -> bytes:
    """Check the CRC of the first ``streams`` blocks; return their payloads (with CRCs if asked)."""
    view, size, out = memoryview(data), header.block_payload_bytes, []
    for k in range(streams):
        start = header.header_size + k * header.block_bytes
        payload = view[start : start + size]
        (stored,) = CRC.unpack_from(view, start + size)
        if block_crc(k, payload) != stored:
            raise BitstreamError(
                f"corrupted: stream {k + 1} checksum mismatch; the file is damaged "
                f"(truncate_bitstream(data, {k}) keeps the intact coarser streams)"
                if k
                else "corrupted: stream 1 checksum mismatch; the file is damaged"
            )
        out.append(view[start : start + header.block_bytes] if keep_crc else payload)
    return b"".join(out)
