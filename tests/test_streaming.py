"""escx.streaming through its API: codes and audio equal to whole-signal coding, look-ahead and
latency, the causal model's receptive field, bad input, and flat cost over a long stream.

Small codecs (the tools' ~140k-parameter Swin + CS-RVQ, its causal variant, a bottleneck-VQ
variant, a narrow DAC) on real speech; ESC-Base at full size in the slow tests.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tools_fixtures import SMALL_CODEC_CONFIG, SPEECH

from escx.config import build_codec
from escx.streaming import StreamDecoder, StreamEncoder, latency
from escx.streaming.timeline import TimeBuffer

REPO = Path(__file__).resolve().parents[1]
needs_speech = pytest.mark.skipif(
    not (SPEECH / "val").is_dir(), reason=f"real speech not found at {SPEECH}/val"
)


def _config(causal: bool = False, quantizer: dict | None = None) -> dict:
    config = copy.deepcopy(SMALL_CODEC_CONFIG)
    if causal:
        config["init_args"]["framing"] = "causal"
        for part in ("encoder", "decoder"):
            config["init_args"][part]["init_args"]["causal"] = True
    if quantizer is not None:
        config["init_args"]["quantizer"] = quantizer
    return config


CODECS = {
    "offline": _config(),
    "causal": _config(causal=True),
    "bottleneck": _config(quantizer={"class_path": "ResidualVQ", "init_args": {"n_streams": 3}}),
    "dac": {
        "class_path": "DAC",
        "init_args": {"encoder_dim": 2, "decoder_dim": 16, "latent_dim": 16},
    },
}


def small_codec(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_codec({"codec": CODECS[name]}).eval()


def speech(seconds: float, index: int = 0) -> torch.Tensor:
    """(1, L) float32 of a held-out speech file, ``seconds`` long (or the whole file)."""
    path = sorted((SPEECH / "val").glob("*.flac"))[index]
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio[: int(seconds * rate)])[None]


def stream(codec, audio: torch.Tensor, sizes, kbps=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Push ``audio`` in pieces of ``sizes`` through an encoder and (each push's codes) a
    decoder; returns all codes and all samples."""
    encoder, decoder = StreamEncoder(codec, kbps), StreamDecoder(codec)
    codes, samples, position = [], [], 0
    for size in sizes:
        piece = encoder.push(audio[:, position : position + size])
        position += size
        assert piece.dtype == torch.long
        assert piece.shape[:3] == (audio.shape[0], encoder.n_streams, codec.num_groups)
        codes.append(piece)
        samples.append(decoder.push(piece))
        if position >= audio.shape[-1]:
            break
    last = encoder.flush()
    codes.append(last)
    samples.append(decoder.flush(last, length=encoder.num_samples))
    return torch.cat(codes, dim=-1), torch.cat(samples, dim=-1)


def random_sizes(total: int, seed: int) -> list[int]:
    """Push sizes from 1 sample to 1 s, log-uniform, covering ``total`` samples."""
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(np.exp(rng.uniform(0, np.log(16000)))))
    return sizes


@needs_speech
@pytest.mark.parametrize("name", list(CODECS))
def test_random_push_sizes_give_the_whole_signal_codes_and_audio(name):
    codec = small_codec(name)
    audio = speech(2.5)[:, :39_999]  # not a whole number of frames
    kbps = codec.bitrate(2) / 1000  # a lower bitrate than the highest: a prefix of streams
    codes, samples = stream(codec, audio, random_sizes(audio.shape[-1], seed=1), kbps)
    expected = codec.encode(audio, 2)
    assert codes.shape == expected.shape
    assert torch.equal(codes, expected)  # 100 % equal, not within a tolerance
    assert samples.shape == audio.shape  # output length = input length
    torch.testing.assert_close(samples, codec.decode(expected, audio.shape[-1]), atol=1e-5, rtol=0)


def test_one_sample_pushes_and_a_one_sample_stream():
    codec = small_codec("causal")
    audio = 0.1 * torch.randn(1, 700, generator=torch.Generator().manual_seed(0))
    codes, samples = stream(codec, audio, [1] * 700)
    assert torch.equal(codes, codec.encode(audio, codec.max_streams))
    assert samples.shape == (1, 700)
    codes, samples = stream(codec, audio[:, :1], [1])
    assert codes.shape[-1] == 1 and samples.shape == (1, 1)


@pytest.mark.parametrize("name", ["offline", "causal"])
def test_a_batch_streams_like_its_rows(name):
    codec = small_codec(name)
    audio = 0.1 * torch.randn(3, 5000, generator=torch.Generator().manual_seed(2))
    codes, samples = stream(codec, audio, [777] * 7)
    assert torch.equal(codes, codec.encode(audio, codec.max_streams))
    assert samples.shape == (3, 5000)


@needs_speech
def test_the_causal_coder_without_escx_kernels_gives_the_same_codes_and_audio():
    """The PyTorch route of every causal block (escx's C kernels switched off) streams as the
    kernel route does."""
    from escx import kernels

    codec = small_codec("causal")
    audio = speech(2.0)
    sizes = random_sizes(audio.shape[-1], seed=4)
    codes, samples = stream(codec, audio, sizes)
    with kernels.switched_off():
        plain_codes, plain_samples = stream(codec, audio, sizes)
    assert torch.equal(plain_codes, codes)
    assert torch.equal(codes, codec.encode(audio, codec.max_streams))
    torch.testing.assert_close(plain_samples, samples, atol=1e-5, rtol=0)


def test_the_causal_model_never_reads_ahead_of_its_frame():
    """Future samples changed: codes of earlier frames and earlier samples stay the same."""
    codec = small_codec("causal")
    audio = 0.1 * torch.randn(1, 32_000, generator=torch.Generator().manual_seed(3))
    cut = 320 * 37 + 5  # inside frame 37
    changed = audio.clone()
    changed[:, cut:] = torch.randn(1, 32_000 - cut)
    frames = cut // 320
    for signal in (audio, changed):  # streamed: a frame is final as soon as it is whole
        encoder = StreamEncoder(codec)
        assert encoder.push(signal[:, : (frames + 1) * 320]).shape[-1] == frames + 1
    codes, other = codec.encode(audio, 6), codec.encode(changed, 6)
    assert torch.equal(codes[..., :frames], other[..., :frames])
    assert not torch.equal(codes[..., frames:], other[..., frames:])
    decoded, decoded_other = codec.decode(codes, 32_000), codec.decode(other, 32_000)
    assert torch.equal(decoded[:, : frames * 320], decoded_other[:, : frames * 320])
    lat = latency(codec)
    assert (lat.encoder_lookahead, lat.decoder_lookahead, lat.total) == (0, 0, 320)
    assert StreamEncoder(codec).lookahead_samples == 0 == StreamDecoder(codec).lookahead_samples


def test_look_ahead_and_latency_of_esc_base_and_the_causal_esc():
    offline = latency(build_codec(str(REPO / "experiments" / "esc.yaml")))
    causal = latency(build_codec(str(REPO / "experiments" / "esc-causal.yaml")))
    # Exact values of the layers' finality rules (docs: README "Streaming").
    assert (offline.encoder_lookahead, offline.decoder_lookahead, offline.total) == (
        6512, 4480, 11312,
    )  # fmt: skip
    assert (causal.encoder_lookahead, causal.decoder_lookahead, causal.total) == (0, 0, 320)
    assert causal.ms(causal.total) == 20.0 <= 40.0


@pytest.fixture(scope="module")
def offline_codec() -> torch.nn.Module:
    return small_codec("offline")


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (lambda e, d: e.push(torch.tensor([[float("nan")]])), "NaN"),
        (lambda e, d: e.push(torch.zeros(2, 3, 4)), "shape"),
        (lambda e, d: (e.push(torch.zeros(1, 5)), e.push(torch.zeros(2, 5))), "batch size 1"),
        (lambda e, d: e.push(torch.zeros(1, 5, dtype=torch.int16)), "floating point"),
        (lambda e, d: e.flush(), "no audio was pushed"),
        (lambda e, d: (e.push(torch.zeros(1, 5)), e.flush(), e.push(torch.zeros(1, 5))), "ended"),
        (lambda e, d: d.push(torch.zeros(1, 2, 5, 1, dtype=torch.long)), "shape"),
        (lambda e, d: d.push(torch.full((1, 2, 3, 1), 1024, dtype=torch.long)), "lie in"),
        (lambda e, d: d.push(torch.zeros(1, 7, 3, 1, dtype=torch.long)), "streams"),
        (lambda e, d: d.push(torch.zeros(1, 2, 3, 1)), "integers"),
        (lambda e, d: d.flush(), "no codes"),
        (lambda e, d: d.flush(torch.zeros(1, 2, 3, 2, dtype=torch.long), length=9999), "cannot"),
        (lambda e, d: StreamEncoder(e.codec, kbps=2.0), "not available"),
        (lambda e, d: StreamEncoder(e.codec, n_streams=9), "n_streams"),
    ],
)
def test_bad_input_is_one_line(action, match, offline_codec):
    codec = offline_codec
    with pytest.raises((ValueError, TypeError)) as caught:
        action(StreamEncoder(codec), StreamDecoder(codec))
    message = str(caught.value)
    assert "\n" not in message and match.lower() in message.lower(), message


def _state_numel(engine: object, seen: set[int] | None = None) -> int:
    """Elements of every tensor an engine holds (its buffers and caches), recursively."""
    seen = set() if seen is None else seen
    if id(engine) in seen or isinstance(engine, torch.nn.Module):
        return 0
    seen.add(id(engine))
    if isinstance(engine, torch.Tensor):
        return engine.numel()
    if isinstance(engine, TimeBuffer):
        return 0 if engine.data is None else engine.data.numel()
    if isinstance(engine, list | tuple):
        return sum(_state_numel(item, seen) for item in engine)
    if hasattr(engine, "__dict__"):
        return sum(_state_numel(value, seen) for value in vars(engine).values())
    return 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["causal", "offline"])
def test_ten_minutes_of_20_ms_pushes_cost_the_same_early_and_late(name):
    """30,000 pushes: time per push and the state held stay flat."""
    codec = small_codec(name)
    encoder, decoder = StreamEncoder(codec), StreamDecoder(codec)
    generator = torch.Generator().manual_seed(4)
    minute = 50 * 60
    times, state = [], []
    for i in range(10 * minute):
        piece = 0.1 * torch.randn(1, 320, generator=generator)
        start = time.thread_time()
        decoder.push(encoder.push(piece))
        times.append(time.thread_time() - start)
        if i % minute == minute - 1:
            state.append(_state_numel(encoder._engine) + _state_numel(decoder._engine))
    first, last = np.median(times[100:minute]), np.median(times[-minute:])
    assert last < 1.5 * first, (first, last)
    assert max(state) == min(state), state  # the same tensors held after 1 and 10 minutes


@pytest.mark.slow
@needs_speech
@pytest.mark.parametrize("config", ["esc.yaml", "esc-causal.yaml"])
def test_esc_base_streams_the_whole_signal_codes_on_real_speech(config):
    torch.manual_seed(0)
    codec = build_codec(str(REPO / "experiments" / config)).eval()
    audio = torch.cat([speech(30.0, i) for i in range(3)], dim=-1)[:, :160_000]  # 10 s
    codes, samples = stream(codec, audio, random_sizes(audio.shape[-1], seed=5))
    expected = codec.encode(audio, 6)
    assert torch.equal(codes, expected)
    assert samples.shape == audio.shape
    torch.testing.assert_close(samples, codec.decode(expected, audio.shape[-1]), atol=1e-5, rtol=0)
