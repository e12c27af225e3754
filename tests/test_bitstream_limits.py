"""Decoding untrusted .escx files: the header is checked against the model before anything is
allocated, mutants of a real file are rejected cleanly, and decoding memory stays bounded."""

from __future__ import annotations

import dataclasses
import random
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from tools_fixtures import make_checkpoint, speech_like, write_wav

from escx.api import load_codec
from escx.bitstream import (
    CODEC_FAMILIES,
    HEADER_SIZE,
    BitstreamError,
    EscxHeader,
    decode_bitstream,
    encode_bitstream,
    pack_header,
)
from escx.bitstream.blocks import block_crc
from escx.bitstream.header import CRC

ESCX = Path(sys.executable).parent / "escx"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt")


@pytest.fixture(scope="module")
def real_file(tmp_path_factory, model) -> bytes:
    """A 9 kbps .escx of 1 s of speech-like audio, made by escx."""
    folder = tmp_path_factory.mktemp("real")
    handle = load_codec(model)
    handle.compress(write_wav(folder / "a.wav", speech_like(16000)), folder / "a.escx")
    return (folder / "a.escx").read_bytes()


def _header_bytes(**fields: int | bytes) -> bytes:
    """A header with any field values (bypassing EscxHeader's checks) and a valid CRC."""
    family = CODEC_FAMILIES.index(fields.pop("codec_family", "stft"))
    return pack_header({**fields, "family_id": family, "reserved": bytes(3)})


def amplification_file(fingerprint: bytes) -> bytes:
    """16 MB of valid blocks that claim 1-bit codes in 255 streams x 255 groups: before the
    header was checked against the model, decoding expanded it to several GB."""
    streams, groups, bits = 255, 255, 1
    frames = 16_000_000 * 8 // (streams * groups * bits)
    payload = bytes((frames * groups * bits + 7) // 8)
    header = EscxHeader(16000, frames * 320, streams, groups, bits, frames, fingerprint)
    blocks = [header.to_bytes()]
    for k in range(streams):
        blocks += [payload, CRC.pack(block_crc(k, payload))]
    return b"".join(blocks)


def test_amplification_file_is_refused_from_its_header_with_little_memory(tmp_path, model):
    handle = load_codec(model)
    path = tmp_path / "bomb.escx"
    path.write_bytes(amplification_file(handle.fingerprint))
    assert path.stat().st_size > 15_000_000
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match="does not match the model"):
            handle.read(path)
        with pytest.raises(BitstreamError, match="does not match the model"):
            handle.unpack(path.read_bytes())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40_000_000  # the file read once for unpack(); nothing expanded


def test_amplification_file_through_the_command_line(tmp_path, model):
    handle = load_codec(model)
    (tmp_path / "bomb.escx").write_bytes(amplification_file(handle.fingerprint))
    result = subprocess.run(
        [str(ESCX), "decompress", "bomb.escx", "-o", "out.wav", "--model", str(model)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "does not match the model" in result.stderr
    assert not (tmp_path / "out.wav").exists()


def test_decoding_memory_is_a_small_multiple_of_the_codes(model):
    codes = np.random.default_rng(0).integers(0, 1024, size=(6, 3, 30_000))  # 10 min at 9 kbps
    data = encode_bitstream(
        codes, sample_rate=16000, num_samples=30_000 * 320, bits_per_code=10, fingerprint=bytes(8)
    )
    tracemalloc.start()
    try:
        _, decoded = decode_bitstream(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(decoded, codes)
    assert peak < 3 * decoded.nbytes  # the old unpacking needed about 5x (a 16-byte-per-code pass)


def _mutants(data: bytes, count: int, seed: int) -> list[bytes]:
    """Byte flips, cuts, extensions, and header rewrites with a valid header CRC."""
    rng = random.Random(seed)
    header = EscxHeader.from_bytes(data)
    limits = {"bits_per_code": 16, "num_streams": 255, "num_groups": 255}
    out = []
    for i in range(count):
        kind = i % 4
        if kind == 0:  # flip bytes anywhere
            mutant = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutant[rng.randrange(len(mutant))] ^= 1 << rng.randrange(8)
            out.append(bytes(mutant))
        elif kind == 1:  # cut or extend
            cut = rng.randrange(len(data) + 64)
            out.append(data[:cut] if cut < len(data) else data + bytes(cut - len(data)))
        else:  # a header that passes its CRC, with fields pushed anywhere in their range
            fields = dataclasses.asdict(header)
            name = rng.choice([*limits, "num_frames", "num_samples", "sample_rate"])
            if name in limits:
                fields[name] = rng.randint(1, limits[name])
            elif name == "num_frames":
                fields[name] = rng.choice([0, 1, header.num_frames + 1, 2**32 - 1])
            elif name == "num_samples":
                fields[name] = rng.choice([0, 1, header.num_samples * 1000, 2**64 - 1])
            else:
                fields[name] = rng.choice([8000, 44100, 2**32 - 1])
            tail = data[HEADER_SIZE:]
            if kind == 3:  # and a payload of the size the new header claims
                claimed = EscxHeader(**fields) if fields["num_frames"] < 2**20 else None
                size = claimed.file_size - HEADER_SIZE if claimed else len(tail)
                tail = (tail * (size // max(len(tail), 1) + 1))[:size]
            out.append(_header_bytes(**fields) + tail)
    return out


def test_mutants_of_a_real_file_are_rejected_with_one_line_or_decode(model, real_file):
    handle = load_codec(model)
    reference = handle.unpack(real_file)[1]
    decoded = 0
    for mutant in _mutants(real_file, 400, seed=18):
        try:
            header, codes = handle.unpack(mutant)
        except BitstreamError as error:
            assert "\n" not in str(error) and str(error)
            continue
        decoded += 1  # only a mutation the format cannot see: same shape as the model allows
        assert codes.shape[1:] == (header.num_streams, 3, handle.num_frames(header.num_samples))
        assert codes.shape[1] <= reference.shape[1] and int(codes.max()) < 1024
    assert decoded < 40  # almost every mutant is caught by a CRC or a header check


def test_a_block_with_nonzero_padding_is_refused():
    codes = np.ones((1, 3, 3), np.int64)  # 90 bits: 6 padding bits in the last byte
    data = bytearray(
        encode_bitstream(
            codes, sample_rate=16000, num_samples=960, bits_per_code=10, fingerprint=bytes(8)
        )
    )
    payload_end = len(data) - 4
    data[payload_end - 1] |= 1
    data[payload_end:] = struct.pack("<I", block_crc(0, bytes(data[HEADER_SIZE:payload_end])))
    with pytest.raises(BitstreamError, match="padding"):
        decode_bitstream(bytes(data))
