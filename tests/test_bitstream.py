"""Tests for the .escx bitstream format (escx/bitstream/, docs/bitstream.md)."""

from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch

from escx.bitstream import (
    FORMAT_VERSION,
    HEADER_SIZE,
    BitstreamError,
    EscxHeader,
    decode_bitstream,
    encode_bitstream,
    fingerprint_state_dict,
    read_escx,
    read_header,
    truncate_bitstream,
    write_escx,
)

FP = bytes(range(8))


def random_codes(shape: tuple[int, int, int], bits: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**bits, size=shape)


def encode(codes: np.ndarray | torch.Tensor, bits: int = 10, fp: bytes = FP) -> bytes:
    frames = codes.shape[-1]
    return encode_bitstream(
        codes, sample_rate=16000, num_samples=frames * 320, bits_per_code=bits, fingerprint=fp
    )


@pytest.fixture
def nine_kbps() -> tuple[np.ndarray, bytes]:
    """10 s at 9 kbps: 6 streams x 3 groups x 500 frames of 10-bit codes."""
    codes = random_codes((6, 3, 500), 10)
    return codes, encode(codes)


@pytest.mark.parametrize(
    ("shape", "bits"),
    [
        ((6, 3, 500), 10),
        ((1, 1, 1), 1),
        ((2, 3, 7), 3),
        ((4, 2, 33), 7),
        ((3, 5, 11), 13),
        ((2, 3, 17), 16),
        ((1, 3, 0), 10),
        ((255, 1, 2), 10),
    ],
)
def test_round_trip(shape: tuple[int, int, int], bits: int) -> None:
    codes = random_codes(shape, bits, seed=sum(shape) + bits)
    codes.flat[:2] = [0, 2**bits - 1][: codes.size]  # extremes of the range
    header, decoded = decode_bitstream(encode(codes, bits), expected_fingerprint=FP)
    assert decoded.dtype == np.int64
    np.testing.assert_array_equal(decoded, codes)
    assert (header.num_streams, header.num_groups, header.num_frames) == shape
    assert (header.bits_per_code, header.sample_rate, header.fingerprint) == (bits, 16000, FP)
    assert header.num_samples == shape[2] * 320
    assert header.version == FORMAT_VERSION


def test_accepts_torch_tensor_and_any_int_dtype() -> None:
    codes = random_codes((2, 3, 9), 10)
    expected = encode(codes)
    assert encode(torch.from_numpy(codes)) == expected
    assert encode(codes.astype(np.uint16)) == expected
    assert encode(codes.astype(np.int32)) == expected


def test_header_round_trip_and_size_bound() -> None:
    header = EscxHeader(48000, 2**64 - 1, 6, 3, 10, 2**32 - 1, FP)
    raw = header.to_bytes()
    assert len(raw) == HEADER_SIZE <= 64
    assert EscxHeader.from_bytes(raw) == header


def test_size_for_10_s_at_9_kbps(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    _, data = nine_kbps
    assert len(data) <= 11_250 + 64  # 11,314 bytes: payload plus all overhead
    assert len(data) == HEADER_SIZE + 6 * (1875 + 4)  # the worked example in docs/bitstream.md


def test_every_stream_prefix_is_valid(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    codes, data = nine_kbps
    block = (len(data) - HEADER_SIZE) // 6
    for k in range(1, 7):
        cut = truncate_bitstream(data, k)
        # Only the header changes: the payload is a byte-exact prefix of the original file.
        assert len(cut) == HEADER_SIZE + k * block
        assert cut[HEADER_SIZE:] == data[HEADER_SIZE : HEADER_SIZE + k * block]
        header, decoded = decode_bitstream(cut)
        assert header.num_streams == k
        np.testing.assert_array_equal(decoded, codes[:k])


def test_truncation_equals_reencoding(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    codes, data = nine_kbps
    for k in range(1, 7):
        assert truncate_bitstream(data, k) == encode(codes[:k])
    assert truncate_bitstream(truncate_bitstream(data, 4), 2) == encode(codes[:2])


@pytest.mark.parametrize("streams", [0, -1, 7])
def test_truncate_rejects_bad_stream_count(
    nine_kbps: tuple[np.ndarray, bytes], streams: int
) -> None:
    with pytest.raises(BitstreamError, match=r"choose 1\.\.6"):
        truncate_bitstream(nine_kbps[1], streams)


def test_every_single_byte_flip_is_detected() -> None:
    data = encode(random_codes((3, 3, 20), 10))
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[i] ^= mask
            with pytest.raises(BitstreamError):
                decode_bitstream(bytes(damaged))


def test_payload_flip_names_the_stream(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    _, data = nine_kbps
    damaged = bytearray(data)
    damaged[HEADER_SIZE + 2 * 1879 + 100] ^= 0x10  # inside stream 3
    with pytest.raises(BitstreamError, match="corrupted: stream 3 checksum mismatch"):
        decode_bitstream(bytes(damaged))
    # The intact coarser streams can still be salvaged.
    assert decode_bitstream(truncate_bitstream(bytes(damaged), 2))[1].shape == (2, 3, 500)


def test_header_flip_is_a_checksum_error(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    damaged = bytearray(nine_kbps[1])
    damaged[6] ^= 0x01  # stream count
    with pytest.raises(BitstreamError, match="header checksum mismatch"):
        decode_bitstream(bytes(damaged))


def test_swapped_stream_blocks_are_detected() -> None:
    data = encode(np.zeros((2, 3, 8), np.int64))  # identical payloads, so only the index differs
    block = (len(data) - HEADER_SIZE) // 2
    swapped = (
        data[:HEADER_SIZE] + data[HEADER_SIZE + block :] + data[HEADER_SIZE : HEADER_SIZE + block]
    )
    with pytest.raises(BitstreamError, match="stream 1 checksum mismatch"):
        decode_bitstream(swapped)


def test_cut_file_is_reported_as_truncated(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    _, data = nine_kbps
    block = 1879
    cuts = [1, 3, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + block, len(data) - 1]
    cuts += [HEADER_SIZE + k * block for k in range(1, 6)]  # cut exactly at a block boundary
    for size in cuts:
        with pytest.raises(BitstreamError, match="^truncated"):
            decode_bitstream(data[:size])
        with pytest.raises(BitstreamError, match="^truncated"):
            truncate_bitstream(data[:size], 1)


def test_trailing_bytes_are_rejected(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        decode_bitstream(nine_kbps[1] + b"\0")


@pytest.mark.parametrize("data", [b"", b"RIFF" + bytes(60), b"hello world, not a codec file"])
def test_not_an_escx_file(data: bytes) -> None:
    with pytest.raises(BitstreamError, match="not an .escx file"):
        decode_bitstream(data)


def test_newer_version_is_rejected(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    newer = bytearray(nine_kbps[1])
    newer[4] = FORMAT_VERSION + 1
    with pytest.raises(BitstreamError, match="made by a newer escx.*upgrade"):
        decode_bitstream(bytes(newer))


def test_fingerprint_mismatch_is_rejected(nine_kbps: tuple[np.ndarray, bytes]) -> None:
    other = bytes(8)
    with pytest.raises(BitstreamError, match="made by a different model.*model that compressed"):
        decode_bitstream(nine_kbps[1], expected_fingerprint=other)
    decode_bitstream(nine_kbps[1], expected_fingerprint=FP)  # the right model decodes


@pytest.mark.parametrize(
    ("codes", "bits", "match"),
    [
        (np.full((1, 3, 4), 1024), 10, "out of range for bits_per_code=10"),
        (np.full((1, 3, 4), -1), 10, "out of range"),
        (np.full((1, 3, 4), 2), 1, "out of range"),
        (np.zeros((3, 4)), 10, "shape"),
        (np.zeros((1, 3, 4), np.float32), 10, "integers"),
        (np.zeros((1, 3, 4), np.int64), 17, "bits_per_code=17 is out of range"),
        (np.zeros((1, 3, 4), np.int64), 0, "bits_per_code=0 is out of range"),
        (np.zeros((0, 3, 4), np.int64), 10, "num_streams=0"),
        (np.zeros((256, 1, 4), np.int64), 10, "num_streams=256"),
    ],
)
def test_encode_rejects_bad_codes(codes: np.ndarray, bits: int, match: str) -> None:
    with pytest.raises(BitstreamError, match=match):
        encode(codes, bits)


@pytest.mark.parametrize("fp", [b"short", bytes(16), "not-bytes"])
def test_encode_rejects_bad_fingerprint(fp: object) -> None:
    with pytest.raises(BitstreamError, match="fingerprint must be 8 bytes"):
        encode(np.zeros((1, 3, 4), np.int64), fp=fp)  # type: ignore[arg-type]


def test_fingerprint_state_dict() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    fp = fingerprint_state_dict(model.state_dict())
    assert isinstance(fp, bytes) and len(fp) == 8
    # Deterministic, independent of key order and of copies.
    reordered = dict(reversed(list(model.state_dict().items())))
    assert fingerprint_state_dict(reordered) == fp
    assert fingerprint_state_dict({k: v.clone() for k, v in model.state_dict().items()}) == fp
    # Any change of a value, dtype, shape or name changes it.
    state = model.state_dict()
    changed_value = dict(state, **{"0.weight": state["0.weight"] + 1e-6})
    changed_dtype = dict(state, **{"0.bias": state["0.bias"].double()})
    changed_shape = dict(state, **{"0.weight": state["0.weight"].reshape(4, 3)})
    renamed = {("x." + k): v for k, v in state.items()}
    variants = [changed_value, changed_dtype, changed_shape, renamed]
    assert len({fp, *(fingerprint_state_dict(s) for s in variants)}) == 5
    assert fingerprint_state_dict(
        {"w": torch.zeros(2, dtype=torch.bfloat16)}
    ) != fingerprint_state_dict({"w": torch.zeros(2, dtype=torch.float16)})


def test_write_and_read(tmp_path, nine_kbps: tuple[np.ndarray, bytes]) -> None:
    codes, data = nine_kbps
    path = tmp_path / "speech.escx"
    write_escx(path, data)
    assert read_escx(path) == data
    write_escx(str(path), truncate_bitstream(data, 2))  # overwrite in place
    np.testing.assert_array_equal(decode_bitstream(read_escx(path))[1], codes[:2])
    assert [p.name for p in tmp_path.iterdir()] == ["speech.escx"]  # no temp files left


def test_write_into_missing_directory_leaves_nothing(
    tmp_path, nine_kbps: tuple[np.ndarray, bytes]
) -> None:
    target = tmp_path / "missing" / "out.escx"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_escx(target, nine_kbps[1])
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(
    tmp_path, monkeypatch: pytest.MonkeyPatch, nine_kbps: tuple[np.ndarray, bytes]
) -> None:
    path = tmp_path / "out.escx"
    path.write_bytes(b"previous")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)  # any module's fsync: the disk is full
    with pytest.raises(OSError, match="No space left"):
        write_escx(path, nine_kbps[1])
    assert path.read_bytes() == b"previous"  # old file untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.escx"]  # temp file removed


def test_write_refuses_invalid_data(tmp_path) -> None:
    with pytest.raises(BitstreamError, match="not an .escx file"):
        write_escx(tmp_path / "x.escx", b"garbage")
    assert list(tmp_path.iterdir()) == []


def test_read_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_escx(tmp_path / "nope.escx")


def test_one_hour_round_trip() -> None:
    codes = random_codes((6, 3, 180_000), 10, seed=1)  # 1 h at 50 frames/s
    data = encode(codes)
    assert len(data) == read_header(data).file_size
    _, decoded = decode_bitstream(data)
    np.testing.assert_array_equal(decoded, codes)
    np.testing.assert_array_equal(decode_bitstream(truncate_bitstream(data, 1))[1], codes[:1])


def test_header_replace_keeps_validation() -> None:
    header = read_header(encode(np.zeros((2, 3, 4), np.int64)))
    with pytest.raises(BitstreamError, match="num_groups=0"):
        dataclasses.replace(header, num_groups=0)


def test_byte_layout_matches_the_docs() -> None:
    """Pins format version 2 byte for byte (docs/bitstream.md); changing it needs a new version."""
    codes = np.array([[[1, 3], [2, 7]]])  # 1 stream, 2 groups, 2 frames: frame-major 1, 2, 3, 7
    data = encode_bitstream(
        codes, sample_rate=16000, num_samples=640, bits_per_code=3, fingerprint=FP,
        codec_family="waveform",
    )  # fmt: skip
    body = b"ESCX" + bytes([2, 3, 1, 2]) + struct.pack("<IQI", 16000, 640, 2) + FP
    body += bytes([1, 0, 0, 0])  # codec family 1 (waveform), 3 reserved zero bytes
    header = body + struct.pack("<I", zlib.crc32(body))
    payload = bytes([0b00101001, 0b11110000])  # 001 010 011 111, MSB first, zero-padded
    block_crc = struct.pack("<I", zlib.crc32(payload, zlib.crc32(b"\x00")))
    assert data == header + payload + block_crc
    assert HEADER_SIZE == 40 and read_header(data).codec_family == "waveform"


def _version_1_file(streams: int = 2) -> tuple[np.ndarray, bytes]:
    """A version 1 file (36-byte header, no codec family) as escx wrote them before DAC."""
    codes = random_codes((streams, 3, 4), 10)
    body = b"ESCX" + bytes([1, 10, streams, 3]) + struct.pack("<IQI", 16000, 1280, 4) + FP
    data = body + struct.pack("<I", zlib.crc32(body))
    v2 = encode(codes)
    block = (len(v2) - HEADER_SIZE) // streams
    return codes, data + v2[HEADER_SIZE : HEADER_SIZE + streams * block]


def test_version_1_files_are_still_read_and_truncate_as_version_1() -> None:
    codes, data = _version_1_file()
    header, decoded = decode_bitstream(data, expected_fingerprint=FP)
    assert (header.version, header.codec_family, header.header_size) == (1, "stft", 36)
    np.testing.assert_array_equal(decoded, codes)
    cut = truncate_bitstream(data, 1)  # a header rewrite: the file stays version 1
    assert cut[4] == 1 and len(cut) == 36 + (len(data) - 36) // 2
    np.testing.assert_array_equal(decode_bitstream(cut)[1], codes[:1])


@pytest.mark.parametrize(
    ("offset", "value", "match"),
    [
        (32, 7, "codec family this escx does not know.*upgrade"),  # family id 7
        (33, 1, "corrupted: invalid header.*reserved"),
    ],
)
def test_unknown_family_and_reserved_bytes_are_refused(offset: int, value: int, match: str):
    data = bytearray(encode(random_codes((1, 3, 4), 10)))
    data[offset] = value
    data[36:40] = struct.pack("<I", zlib.crc32(bytes(data[:36])))  # a valid header CRC
    with pytest.raises(BitstreamError, match=match):
        decode_bitstream(bytes(data))


def test_a_family_without_an_id_cannot_be_written() -> None:
    with pytest.raises(BitstreamError, match="codec family 'spectral' has no id"):
        encode_bitstream(np.zeros((1, 1, 1), np.int64), sample_rate=16000, num_samples=320,
                         bits_per_code=10, fingerprint=FP, codec_family="spectral")  # fmt: skip


def test_invalid_field_with_valid_checksum_is_rejected() -> None:
    body = b"ESCX" + bytes([1, 10, 0, 3]) + struct.pack("<IQI", 16000, 0, 0) + FP  # 0 streams
    with pytest.raises(BitstreamError, match="corrupted: invalid header.*num_streams=0"):
        decode_bitstream(body + struct.pack("<I", zlib.crc32(body)))
