"""The streamable .escx form (escx.streaming.packets): round trip, cuts at every byte, damage."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from escx.streaming.packets import (
    MAX_PACKET_FRAMES,
    STREAM_HEADER_SIZE,
    PacketError,
    PacketReader,
    PacketWriter,
    StreamHeader,
)

HEADER = StreamHeader(16000, 320, 4, 3, 10, bytes(range(8)), "stft")


def _stream(frames_per_push=(1, 2, 0, 3, 1), samples=None) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    writer = PacketWriter(HEADER, max_frames=2)
    data, parts = [writer.start()], []
    for k in frames_per_push:
        codes = rng.integers(0, 1024, (4, 3, k))
        parts.append(codes)
        data.append(writer.packets(codes))
    total = sum(frames_per_push)
    data.append(writer.packets(np.zeros((4, 3, 0), np.int64), samples or total * 320 - 7))
    return b"".join(data), np.concatenate(parts, axis=-1)


def _read(data: bytes, step: int = 7) -> tuple[PacketReader, list]:
    reader, packets = PacketReader(), []
    for i in range(0, len(data), step):
        packets += reader.feed(data[i : i + step])
    return reader, packets


def test_round_trip_in_any_byte_pieces():
    data, codes = _stream()
    for step in (1, 5, len(data)):
        reader, packets = _read(data, step)
        assert reader.ended and reader.header == HEADER
        assert [p.sequence for p in packets] == list(range(len(packets)))
        assert np.array_equal(np.concatenate([p.codes for p in packets], axis=-1), codes)
        assert packets[-1].last and packets[-1].num_samples == codes.shape[-1] * 320 - 7
        assert all(p.codes.shape[-1] <= 2 for p in packets)  # max_frames=2 split the 3


def test_a_stream_cut_anywhere_gives_exactly_its_whole_packets():
    data, _ = _stream()
    _, whole = _read(data)
    boundaries, reader = [], PacketReader()  # where each packet ends, fed byte by byte
    for i in range(len(data)):
        if reader.feed(data[i : i + 1]):
            boundaries.append(i + 1)
    assert len(boundaries) == len(whole) and boundaries[-1] == len(data)
    for cut in range(len(data)):
        reader, packets = _read(data[:cut], 3)
        assert len(packets) == sum(b <= cut for b in boundaries)
        assert not reader.ended
        got = [p.codes for p in packets]
        assert all(np.array_equal(a.codes, b) for a, b in zip(whole, got, strict=False))


def test_any_flipped_bit_is_refused_or_looks_like_a_cut():
    """No damaged codes ever come out: a flipped bit is refused, except in a packet's frame
    count, which can make the packet look longer than the stream (then it looks cut there)."""
    data, _ = _stream()
    _, whole = _read(data)
    refused = 0
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        try:
            reader, packets = _read(bytes(damaged))
        except PacketError as error:
            assert "\n" not in str(error)
            refused += 1
            continue
        assert not reader.ended and len(packets) < len(whole)
        assert all(np.array_equal(a.codes, b.codes) for a, b in zip(packets, whole, strict=False))
    assert refused >= len(data) - 2 * len(whole)  # at most the frame counts' bytes


def test_missing_repeated_foreign_and_trailing_packets_are_refused():
    writer = PacketWriter(HEADER)
    start = writer.start()
    first = writer.packets(np.zeros((4, 3, 1), np.int64))
    second = writer.packets(np.ones((4, 3, 1), np.int64))
    last = writer.packets(np.zeros((4, 3, 0), np.int64), num_samples=640)
    cases = {
        "missing": start + first + last,
        "repeated": start + first + first,
        "out of order": start + second + first,
        "trailing": start + first + second + last + b"\0",
    }
    other = PacketWriter(StreamHeader(16000, 320, 4, 3, 10, bytes(8), "stft"))
    cases["foreign"] = start + other.packets(np.zeros((4, 3, 1), np.int64))
    messages = {
        "missing": "was due",
        "repeated": "was due",
        "out of order": "was due",
        "trailing": "after the last packet",
        "foreign": "checksum",
    }
    for name, data in cases.items():
        with pytest.raises(PacketError, match=messages[name]):
            _read(data)


def test_headers_and_crafted_packets():
    data, _ = _stream()
    with pytest.raises(PacketError, match="an .escx file, not a stream"):
        PacketReader().feed(b"ESCX" + bytes(40))
    with pytest.raises(PacketError, match="not an escx stream"):
        PacketReader().feed(b"RIFF")
    newer = bytearray(data[:STREAM_HEADER_SIZE])
    newer[4] = 9
    with pytest.raises(PacketError, match="newer escx"):
        PacketReader().feed(bytes(newer))
    # A packet claiming more frames than allowed is refused before its payload is awaited.
    body = struct.pack("<HH", MAX_PACKET_FRAMES + 1, 0)
    with pytest.raises(PacketError, match="claims"):
        PacketReader().feed(data[:STREAM_HEADER_SIZE] + body)
    # A last packet whose length its frames cannot hold, with a valid checksum.
    seed = HEADER.seed
    body = struct.pack("<HHQ", 0x8000, 0, 5000)
    crc = zlib.crc32(body, zlib.crc32(struct.pack("<Q", 0), seed))
    with pytest.raises(PacketError, match="cannot hold"):
        PacketReader().feed(HEADER.to_bytes() + body + struct.pack("<I", crc))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"num_streams": 0}, "num_streams"),
        ({"bits_per_code": 17}, "bits_per_code"),
        ({"samples_per_frame": 0}, "samples_per_frame"),
        ({"fingerprint": b"short"}, "fingerprint"),
        ({"codec_family": "midi"}, "family"),
    ],
)
def test_invalid_headers_are_not_written(fields, match):
    values = {**HEADER.__dict__, **fields}
    with pytest.raises(PacketError, match=match):
        StreamHeader(**values)


def test_the_writer_refuses_what_it_cannot_frame():
    writer = PacketWriter(HEADER)
    with pytest.raises(PacketError, match="shape"):
        writer.packets(np.zeros((3, 3, 1), np.int64))
    with pytest.raises(PacketError, match="out of range"):
        writer.packets(np.full((4, 3, 1), 1024))
    with pytest.raises(PacketError, match="cannot hold"):
        writer.packets(np.zeros((4, 3, 1), np.int64), num_samples=321)
    with pytest.raises(PacketError, match="frames per packet"):
        PacketWriter(HEADER, max_frames=0)


def test_the_stream_layout_matches_the_docs():
    """docs/bitstream.md "Streamable form", byte for byte (stream version 1)."""
    header = StreamHeader(16000, 320, 2, 1, 10, bytes(range(8)), "waveform")
    writer = PacketWriter(header)
    start = writer.start()
    body = b"ESCS" + bytes([1, 10, 2, 1]) + struct.pack("<II", 16000, 320) + bytes(range(8))
    body += bytes([1, 0, 0, 0])
    assert start == body + struct.pack("<I", zlib.crc32(body))
    # Stream 0 codes 1, 2 and stream 1 codes 3, 1023 over two frames: stream by stream, frame
    # by frame, 10 bits each MSB first, zero-padded to a byte.
    codes = np.array([[[1, 2]], [[3, 1023]]])
    packet = writer.packets(codes)
    bits = "".join(f"{v:010b}" for v in (1, 2, 3, 1023))
    payload = int(bits, 2).to_bytes(5, "big")
    head = struct.pack("<HH", 2, 0)
    seed = zlib.crc32(body)
    crc = zlib.crc32(head + payload, zlib.crc32(struct.pack("<Q", 0), seed))
    assert packet == head + payload + struct.pack("<I", crc)
    last = writer.packets(np.zeros((2, 1, 0), np.int64), num_samples=600)
    head = struct.pack("<HHQ", 0x8000, 1, 600)
    crc = zlib.crc32(head, zlib.crc32(struct.pack("<Q", 1), seed))
    assert last == head + struct.pack("<I", crc)
