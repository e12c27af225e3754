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

The package's modules, each of which this one re-exports the public names of:

* :mod:`escx.bitstream.header`: the header's layout, field limits and codec families,
  :class:`EscxHeader`, :func:`read_header`, and :class:`BitstreamError`;
* :mod:`escx.bitstream.fingerprint`: :func:`fingerprint_state_dict`, which model made a file;
* :mod:`escx.bitstream.packing`: bit packing of each stream's codes;
* :mod:`escx.bitstream.blocks`: per-stream blocks and their CRCs;
* :mod:`escx.bitstream.container`: :func:`encode_bitstream`, :func:`decode_bitstream` and
  :func:`truncate_bitstream` on whole files in memory;
* :mod:`escx.bitstream.disk`: :func:`write_escx` (atomic), :func:`read_escx` and
  :func:`peek_header` on files on disk.
"""

from escx.bitstream.container import decode_bitstream, encode_bitstream, truncate_bitstream
from escx.bitstream.disk import peek_header, read_escx, write_escx
from escx.bitstream.fingerprint import fingerprint_state_dict
from escx.bitstream.header import (
    CODEC_FAMILIES,
    FINGERPRINT_SIZE,
    FORMAT_VERSION,
    HEADER_SIZE,
    HEADER_SIZE_V1,
    MAGIC,
    SUPPORTED_VERSIONS,
    BitstreamError,
    EscxHeader,
    pack_header,
    read_header,
)

__all__ = [
    "CODEC_FAMILIES",
    "FINGERPRINT_SIZE",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "HEADER_SIZE_V1",
    "MAGIC",
    "SUPPORTED_VERSIONS",
    "BitstreamError",
    "EscxHeader",
    "decode_bitstream",
    "encode_bitstream",
    "fingerprint_state_dict",
    "pack_header",
    "peek_header",
    "read_escx",
    "read_header",
    "truncate_bitstream",
    "write_escx",
]
