"""escx.load_codec / CodecHandle / checkpoint format, and chunked coding (escx/chunking.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tools_fixtures import (
    SMALL_CODEC_CONFIG,
    SPEECH,
    make_checkpoint,
    speech_like,
    write_wav,
)

import escx
from escx.api import CheckpointError, CodecHandle, load_codec, save_codec_checkpoint
from escx.bitstream import fingerprint_state_dict
from escx.chunking import decode_chunked, encode_chunked, plan_chunks
from escx.config import build_codec


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt")


@pytest.fixture(scope="module")
def handle(checkpoint) -> CodecHandle:
    return load_codec(checkpoint)


# ---- checkpoint format -----------------------------------------------------------------------


def test_load_codec_rebuilds_the_saved_codec(tmp_path):
    torch.manual_seed(3)
    codec = build_codec({"codec": SMALL_CODEC_CONFIG}).eval()
    path = save_codec_checkpoint(codec, SMALL_CODEC_CONFIG, tmp_path / "m.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]  # no temporary left
    handle = escx.load_codec(path)
    assert isinstance(handle, escx.CodecHandle)
    assert not handle.codec.training
    assert handle.sample_rate == 16000
    assert handle.fingerprint == fingerprint_state_dict(codec.state_dict())
    audio = torch.from_numpy(speech_like(5000))
    codes = handle.encode(audio, kbps=4.5)
    assert codes.shape == (1, 3, 3, codec.num_frames(5000)) and codes.dtype == torch.int64
    assert torch.equal(codes, codec.encode(audio, 3))
    assert torch.allclose(handle.decode(codes, 5000), codec.decode(codes, 5000), atol=1e-6)
    assert handle.encode(audio).shape[1] == 6  # default: the highest bitrate


def test_lightning_style_checkpoint_ignores_other_entries(tmp_path, checkpoint):
    saved = torch.load(checkpoint, weights_only=True)
    blob = {
        "state_dict": {**saved["state_dict"], "discriminator.w": torch.ones(3)},
        "escx": {"codec_config": SMALL_CODEC_CONFIG, "sample_rate": 16000, "batches_seen": 7},
        "hyper_parameters": {"pretrain_steps": 3, "val_kbps": [1.5, 9.0]},
        "optimizer_states": [{}],
    }
    torch.save(blob, tmp_path / "last.ckpt")
    handle = load_codec(tmp_path / "last.ckpt")
    assert handle.fingerprint == load_codec(checkpoint).fingerprint


def test_bad_checkpoints_give_one_line_errors(tmp_path, checkpoint):
    good = checkpoint.read_bytes()
    cases = {
        "missing.ckpt": None,
        "garbage.ckpt": b"this is not a checkpoint",
        "cut.ckpt": good[: len(good) // 2],
        "empty.ckpt": b"",
    }
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
    torch.save({"weights": torch.ones(2)}, tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {}, "escx": {"codec_config": None}}, tmp_path / "noconfig.ckpt")
    other = dict(SMALL_CODEC_CONFIG, init_args={})  # ESC-Base shapes: the weights do not fit
    blob = torch.load(checkpoint, weights_only=True)
    torch.save({**blob, "escx": {**blob["escx"], "codec_config": other}}, tmp_path / "wrong.ckpt")
    blob["state_dict"]["codec.encoder.patch_embed.proj.bias"] += 1e-3  # silently damaged
    torch.save(blob, tmp_path / "damaged.ckpt")
    for name in [*cases, "foreign.ckpt", "noconfig.ckpt", "wrong.ckpt", "damaged.ckpt"]:
        with pytest.raises(CheckpointError) as info:
            load_codec(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value), name
    with pytest.raises(CheckpointError, match="not a file"):
        load_codec(tmp_path)


def test_save_refuses_a_config_that_does_not_rebuild_the_codec(tmp_path):
    codec = build_codec({"codec": SMALL_CODEC_CONFIG})
    with pytest.raises(CheckpointError, match="does not rebuild"):
        save_codec_checkpoint(codec, {"class_path": "STFTCodec"}, tmp_path / "m.ckpt")
    with pytest.raises(OSError, match="does not exist"):
        save_codec_checkpoint(codec, SMALL_CODEC_CONFIG, tmp_path / "no" / "m.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    codec = build_codec({"codec": SMALL_CODEC_CONFIG})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_codec_checkpoint(codec, SMALL_CODEC_CONFIG, tmp_path / "m.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_bitrate_arguments(handle):
    audio = torch.zeros(1000)
    for kbps in (4.0, 10.5, 0):
        with pytest.raises(ValueError, match="--kbps"):
            handle.encode(audio, kbps=kbps)
    with pytest.raises(ValueError, match="n_streams"):
        handle.encode(audio, n_streams=7)
    with pytest.raises(ValueError, match="either"):
        handle.streams(kbps=3.0, n_streams=2)
    assert handle.streams(kbps=7.5) == 5 and handle.max_kbps == 9.0


def test_bad_tensors_are_refused(handle):
    with pytest.raises(ValueError, match="NaN"):
        handle.encode(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="shape"):
        handle.encode(torch.zeros(0))
    with pytest.raises(ValueError, match="frames"):
        handle.decode(torch.zeros(1, 2, 3, 4, dtype=torch.long), 10_000)


@pytest.mark.parametrize("length", [1, 319, 320, 641, 16001])
def test_output_length_equals_input_length(handle, length):
    audio = torch.from_numpy(speech_like(length))
    codes = handle.encode(audio[None].repeat(2, 1), n_streams=2)
    assert codes.shape[0] == 2
    assert handle.decode(codes, length).shape == (2, length)


# ---- chunked coding --------------------------------------------------------------------------


def test_plan_chunks_covers_the_input_on_aligned_boundaries():
    chunks = plan_chunks(103, chunk_frames=20, context_frames=6, align=2)
    assert [c.start for c in chunks] == list(range(0, 103, 20))
    assert chunks[-1].stop == 103 and all(
        a.stop == b.start for a, b in zip(chunks[:-1], chunks[1:], strict=True)
    )
    assert chunks[0].context_start == 0 and chunks[1].context_start == 14
    assert chunks[-1].context_stop == 103 and chunks[0].context_stop == 26
    assert all(c.start % 2 == 0 and c.context_start % 2 == 0 for c in chunks)
    assert plan_chunks(7, 20, 6) == plan_chunks(7, 20, 6)[:1]  # short input: one chunk
    for bad in [(21, 6), (20, 5), (0, 0)]:
        with pytest.raises(ValueError, match="multiple"):
            plan_chunks(100, *bad)


def test_chunked_coding_equals_whole_file_coding(checkpoint):
    # 20-frame (0.4 s) chunks with 10 frames of context: many seams in 3.3 s of audio.
    chunked = load_codec(checkpoint, chunk_seconds=0.4, context_seconds=0.2)
    codec = chunked.codec
    audio = torch.from_numpy(speech_like(52_917, seed=1))[None]
    codes = chunked.encode(audio)
    whole = codec.encode(audio, 6)
    assert codes.shape == whole.shape
    assert (codes == whole).float().mean() > 0.99
    decoded = chunked.decode(whole, audio.shape[-1])
    reference = codec.decode(whole, audio.shape[-1])
    assert decoded.shape == reference.shape
    assert (decoded - reference).abs().max() < 1e-5


def test_chunked_decoding_streams_pieces_to_a_sink(handle):
    audio = torch.from_numpy(speech_like(9_000))[None]
    codes = handle.codec.encode(audio, 2)
    pieces: list[torch.Tensor] = []
    out = decode_chunked(handle.codec, codes, 9_000, 10, 10, sink=pieces.append)
    assert out is None and len(pieces) == 3
    assert sum(p.shape[-1] for p in pieces) == 9_000
    reference = handle.codec.decode(codes, 9_000)
    assert (torch.cat(pieces, -1) - reference).abs().max() < 1e-5


def test_chunked_coding_on_real_speech(handle):
    if not SPEECH.is_dir():
        pytest.skip(f"real speech not found at {SPEECH} (only in the escx development checkout)")
    files = sorted((SPEECH / "val").rglob("*.flac"))[:4]
    audio = torch.from_numpy(np.concatenate([sf.read(f, dtype="float32")[0] for f in files]))
    audio = audio[None, : 12 * 16000 + 123]
    codes = encode_chunked(handle.codec, audio, audio.shape[-1], 6, 100, 50)
    whole = handle.codec.encode(audio, 6)
    assert (codes == whole).float().mean() > 0.99
    decoded = decode_chunked(handle.codec, whole, audio.shape[-1], 100, 50)
    reference = handle.codec.decode(whole, audio.shape[-1])
    snr = 10 * torch.log10(reference.pow(2).sum() / (decoded - reference).pow(2).sum().clamp(1e-20))
    assert snr > 60


# ---- files -----------------------------------------------------------------------------------


def test_compress_decompress_files(tmp_path, handle):
    samples = speech_like(12_345, seed=2)
    source = write_wav(tmp_path / "in.wav", samples, subtype="FLOAT")
    result = handle.compress(source, tmp_path / "in.escx", kbps=6.0)
    assert result.streams == 4 and result.notice is None
    assert result.num_bytes == (tmp_path / "in.escx").stat().st_size
    # 39 frames x 3 groups x 10 bits per stream -> 147 bytes + CRC; plus the 40-byte header.
    assert result.num_bytes == 40 + 4 * (147 + 4)
    assert result.kbps == pytest.approx(644 * 8 / (12_345 / 16000) / 1000)
    back = handle.decompress(tmp_path / "in.escx", tmp_path / "out.wav")
    assert back.seconds == pytest.approx(12_345 / 16000)
    info = sf.info(tmp_path / "out.wav")
    assert (info.frames, info.samplerate, info.channels, info.subtype) == (
        12_345,
        16000,
        1,
        "PCM_16",
    )
    decoded, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    expected = handle.decode(handle.encode(torch.from_numpy(samples), kbps=6.0), 12_345)[0]
    assert np.abs(decoded - expected.clamp(-1, 1).numpy()).max() < 1e-4  # 16-bit rounding
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.escx", "in.wav", "out.wav"]


def test_failed_decompress_leaves_no_file(tmp_path, handle, monkeypatch):
    source = write_wav(tmp_path / "in.wav", speech_like(4000))
    handle.compress(source, tmp_path / "in.escx")

    def broken(*args, **kwargs):
        raise RuntimeError("decoder crashed")

    monkeypatch.setattr(handle.codec, "decode", broken)
    with pytest.raises(RuntimeError, match="crashed"):
        handle.decompress(tmp_path / "in.escx", tmp_path / "out.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.escx", "in.wav"]
