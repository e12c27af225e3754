"""Codec behaviour: ESC parameter counts, bitrates, any input length, round trips, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import escx
from escx.quantizers.codebook import Codebook


def _count(module: torch.nn.Module) -> int:
    # Buffers (STFT window, relative-position indices) are not parameters (docs/esc.md §11).
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def esc() -> escx.Codec:
    torch.manual_seed(0)
    return escx.ESC().eval()


# ---------------------------------------------------------------- ESC as published


def test_esc_base_parameter_counts(esc) -> None:
    # docs/esc.md §11: total, then encoder / decoder / quantizers (codebooks / projections).
    assert _count(esc) == 8_386_373
    assert _count(esc.encoder) == 2_101_275
    assert _count(esc.decoder) == 5_904_170
    assert _count(esc.quantizer) == 380_928
    codebooks = sum(_count(m) for m in esc.quantizer.modules() if isinstance(m, Codebook))
    assert codebooks == 147_456


def test_esc_large_parameter_counts() -> None:
    large = escx.ESC(depth=4)
    assert _count(large) == 15_580_931
    assert (_count(large.encoder), _count(large.decoder)) == (3_948_975, 11_251_028)
    assert _count(large.quantizer) == 380_928


def test_esc_bitrates_and_stream_counts(esc) -> None:
    # 3 groups x 10 bits per 20 ms frame = 1.5 kbps per stream (docs/esc.md §10).
    assert esc.sample_rate == 16000
    assert esc.max_streams == 6 and esc.num_groups == 3 and esc.codebook_size == 1024
    assert esc.frame_rate == 50
    for s in range(1, 7):
        assert esc.bitrate(s) == 1500 * s
        assert esc.streams_for_kbps(1.5 * s) == s
    assert esc.streams_for_kbps(4.5) == 3


@pytest.mark.parametrize("kbps", [2.0, 10.5, 0, -1.5, 0.75, 12])
def test_unavailable_bitrates_are_refused(esc, kbps: float) -> None:
    with pytest.raises(ValueError, match="not available") as info:
        esc.streams_for_kbps(kbps)
    assert "1.5" in str(info.value) and "9" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("length", [4000, 4321])
def test_esc_codes_are_int64_at_50_frames_per_second(esc, length: int) -> None:
    audio = 0.1 * torch.randn(2, length)
    for s in (1, 6):
        codes = esc.encode(audio, s)
        assert codes.dtype == torch.int64
        assert codes.shape == (2, s, 3, math.ceil(length / 320))
        assert 0 <= int(codes.min()) and int(codes.max()) < 1024


# ---------------------------------------------------------------- any input length


@pytest.mark.parametrize("length", [1, 79, 80, 319, 320, 321, 4000, 16080, 47920])
def test_output_length_equals_input_length(length: int, backbone, make_codec) -> None:
    codec = make_codec(*backbone, "CrossScaleRVQ").eval()
    audio = 0.1 * torch.randn(1, length)
    codes = codec.encode(audio, 3)
    assert codes.shape == (1, 3, codec.num_groups, max(1, math.ceil(length / 320)))
    decoded = codec.decode(codes, length)
    assert decoded.shape == (1, length) and torch.isfinite(decoded).all()
    with torch.no_grad():
        assert codec(audio, 3).audio.shape == (1, length)


def test_one_dimensional_audio_is_one_batch_item(make_codec) -> None:
    codec = make_codec("SwinEncoder", "SwinDecoder", "CrossScaleRVQ").eval()
    audio = 0.1 * torch.randn(1000)
    assert torch.equal(codec.encode(audio, 2), codec.encode(audio[None], 2))


# ---------------------------------------------------------------- bad input


BAD_AUDIO = {
    "empty batch item": (torch.zeros(1, 0), "empty"),
    "empty vector": (torch.zeros(0), "empty"),
    "no batch items": (torch.zeros(0, 100), "empty"),
    "nan": (torch.tensor([[0.0, float("nan"), 0.1]]), "NaN"),
    "inf": (torch.tensor([[0.0, float("inf"), 0.1]]), "infinite"),
    "channels": (torch.zeros(2, 1, 400), r"shape \(L,\) or \(B, L\)"),
}


@pytest.mark.parametrize("case", list(BAD_AUDIO))
def test_bad_audio_is_refused_with_a_clear_message(case: str, make_codec) -> None:
    codec = make_codec("SwinEncoder", "SwinDecoder", "CrossScaleRVQ").eval()
    audio, pattern = BAD_AUDIO[case]
    for call in (lambda: codec.encode(audio, 1), lambda: codec(audio, 1)):
        with pytest.raises(ValueError, match=pattern) as info:
            call()
        assert "\n" not in str(info.value)


def test_bad_stream_counts_are_refused(make_codec) -> None:
    codec = make_codec("SwinEncoder", "SwinDecoder", "CrossScaleRVQ").eval()
    audio = 0.1 * torch.randn(1, 640)
    for s in (0, codec.max_streams + 1):
        with pytest.raises(ValueError, match="n_streams must be between 1 and"):
            codec.encode(audio, s)
        with pytest.raises(ValueError, match="n_streams must be between 1 and"):
            codec(audio, s)


def test_bad_codes_are_refused(make_codec) -> None:
    codec = make_codec("SwinEncoder", "SwinDecoder", "CrossScaleRVQ").eval()
    codes = codec.encode(0.1 * torch.randn(1, 640), 2)  # (1, 2, 3, 2)
    with pytest.raises(ValueError, match="codes must have shape"):
        codec.decode(codes[0], 640)
    with pytest.raises(ValueError, match="code frames cannot hold 1000 samples"):
        codec.decode(codes, 1000)
    with pytest.raises(ValueError, match="corrupt"):
        codec.decode(codes + codec.codebook_size, 640)
    with pytest.raises(ValueError, match="corrupt"):
        codec.decode(codes - codec.codebook_size, 640)
    with pytest.raises(ValueError, match="n_streams must be between 1 and"):
        codec.decode(codes[:, :0], 640)


# ---------------------------------------------------------------- round trip == eval forward


def _assert_round_trip_equals_forward(codec, audio: torch.Tensor) -> None:
    codec.eval()
    length = audio.shape[-1]
    with torch.no_grad():
        for s in range(1, codec.max_streams + 1):
            codes = codec.encode(audio, s)
            forward = codec(audio, s)
            assert torch.equal(codes, forward.quantizer.codes), f"codes differ at {s} streams"
            decoded = codec.decode(codes, length)
            assert torch.equal(decoded, forward.audio), f"audio differs at {s} streams"


def test_registered_codecs_decode_exactly_what_forward_produces(
    codec_name, make_registered_codec
) -> None:
    codec = make_registered_codec(codec_name)
    _assert_round_trip_equals_forward(codec, 0.1 * torch.randn(2, 4800))  # 0.3 s


def test_every_backbone_and_quantizer_decode_exactly_what_forward_produces(
    backbone, quantizer_name, make_codec, short_audio
) -> None:
    codec = make_codec(*backbone, quantizer_name)
    # One training forward moves batch-norm running statistics off their initial values.
    codec.train()
    with torch.no_grad():
        codec(short_audio, 1)
    _assert_round_trip_equals_forward(codec, short_audio)
