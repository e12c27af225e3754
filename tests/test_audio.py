"""Audio I/O: reading (mono down-mix, resampling, windows), atomic writing, errors, discovery."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from escx.audio import (
    AUDIO_EXTENSIONS,
    AudioError,
    audio_info,
    find_audio_files,
    read_audio,
    write_audio,
)


def tone(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: torch.Tensor, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x.numpy()))
    return float(np.argmax(spec) * sr / len(x))


def test_reads_16k_mono_as_float32_vector(tmp_path):
    x = tone(440, 1.0, 16000)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    audio, info = read_audio(tmp_path / "a.wav")
    assert audio.dtype == torch.float32 and audio.shape == (16000,)
    assert torch.allclose(audio, torch.from_numpy(x))
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, 16000)
    assert info.notice() is None and not info.resampled and not info.downmixed


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = tone(300, 0.5, 16000), tone(700, 0.5, 16000, 0.2)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    audio, info = read_audio(tmp_path / "st.wav")
    assert info.channels == 2 and info.downmixed
    assert torch.allclose(audio, torch.from_numpy((left + right) / 2), atol=1e-6)
    assert "mono" in info.notice()


def test_44k1_is_resampled_to_16k(tmp_path):
    sf.write(tmp_path / "hi.flac", tone(1000, 1.0, 44100), 44100)
    audio, info = read_audio(tmp_path / "hi.flac")
    assert info.sample_rate == 44100 and info.resampled
    assert audio.shape == (16000,) == (info.target_frames,)
    assert abs(peak_hz(audio, 16000) - 1000) < 2
    assert "44100 Hz -> 16000 Hz" in info.notice()


@pytest.mark.parametrize("ext", AUDIO_EXTENSIONS)
def test_every_extension_round_trips(tmp_path, ext):
    x = torch.from_numpy(tone(500, 0.5, 16000))
    path = write_audio(tmp_path / f"x{ext}", x, 16000)
    audio, info = read_audio(path)
    assert info.sample_rate == 16000
    n = min(len(audio), len(x))
    assert abs(len(audio) - len(x)) < 1200  # lossy codecs may pad a frame
    assert abs(peak_hz(audio[:n], 16000) - 500) < 5


@pytest.mark.parametrize("sr", [16000, 44100, 22050, 8000])
def test_window_equals_slice_of_whole_file(tmp_path, sr):
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "n.wav", rng.uniform(-0.5, 0.5, (sr + 123, 2)), sr, subtype="FLOAT")
    full, info = read_audio(tmp_path / "n.wav")
    for offset, n in [(0, 100), (1234, 4000), (info.target_frames - 50, 100), (9000, None)]:
        window, _ = read_audio(tmp_path / "n.wav", offset=offset, num_frames=n)
        ref = full[offset : None if n is None else offset + n]
        assert window.shape == ref.shape
        assert torch.allclose(window, ref, atol=1e-6)


def test_reads_encoded_bytes(tmp_path):
    sf.write(tmp_path / "b.flac", tone(200, 0.25, 16000), 16000)
    audio, info = read_audio((tmp_path / "b.flac").read_bytes())
    assert audio.shape == (4000,) and info.format == "FLAC"


def _bad_inputs(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "text.wav").write_text("not audio at all")
    (tmp_path / "zero_bytes.wav").write_bytes(b"")
    sf.write(tmp_path / "no_samples.wav", np.zeros(0, np.float32), 16000)
    nan = np.array([0.0, np.nan, 0.5], np.float32)
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    inf = np.array([0.0, np.inf, 0.5], np.float32)
    sf.write(tmp_path / "inf.wav", inf, 16000, subtype="FLOAT")
    return {
        "missing.wav": "not found",
        "folder": "directory",
        "text.wav": "not a readable audio file",
        "zero_bytes.wav": "empty",
        "no_samples.wav": "empty",
        "nan.wav": "NaN or infinite",
        "inf.wav": "NaN or infinite",
    }


def test_bad_inputs_raise_one_line_errors(tmp_path):
    for name, words in _bad_inputs(tmp_path).items():
        with pytest.raises(AudioError) as err:
            read_audio(tmp_path / name)
        message = str(err.value)
        assert words in message and name in message and "\n" not in message
    assert issubclass(AudioError, ValueError)


def test_header_check_catches_unusable_files_without_decoding(tmp_path):
    _bad_inputs(tmp_path)
    for name in ("missing.wav", "folder", "text.wav", "zero_bytes.wav", "no_samples.wav"):
        with pytest.raises(AudioError):
            audio_info(tmp_path / name)


def test_write_is_pcm16_clipped_and_leaves_no_temp_file(tmp_path):
    x = torch.tensor([0.0, 0.5, 2.0, -3.0])
    write_audio(tmp_path / "c.wav", x, 16000)
    assert sf.info(tmp_path / "c.wav").subtype == "PCM_16"
    audio, _ = read_audio(tmp_path / "c.wav")
    assert audio.max() <= 1.0 and audio.min() >= -1.0 and audio[2] > 0.99 and audio[3] < -0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.wav"]


def test_write_channels_first_stereo(tmp_path):
    x = torch.stack([torch.full((100,), 0.25), torch.full((100,), -0.25)])
    write_audio(tmp_path / "s.flac", x, 8000)
    info = sf.info(tmp_path / "s.flac")
    assert (info.channels, info.frames, info.samplerate) == (2, 100, 8000)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(AudioError, match="disk full"):
        write_audio(tmp_path / "x.wav", torch.zeros(10), 16000)
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_file(tmp_path, monkeypatch):
    write_audio(tmp_path / "x.wav", torch.full((10,), 0.5), 16000)
    before = (tmp_path / "x.wav").read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        write_audio(tmp_path / "x.wav", torch.zeros(10), 16000)
    assert (tmp_path / "x.wav").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.wav"]


@pytest.mark.parametrize(
    ("name", "audio", "sr", "words"),
    [
        ("x.txt", torch.zeros(4), 16000, "use one of"),
        ("nodir/x.wav", torch.zeros(4), 16000, "does not exist"),
        ("x.wav", torch.zeros(0), 16000, "non-empty"),
        ("x.wav", torch.zeros(1, 2, 3), 16000, "shape"),
        ("x.wav", torch.tensor([0.0, float("nan")]), 16000, "NaN"),
        ("x.wav", torch.zeros(4), 0, "sample rate"),
    ],
)
def test_write_rejects_bad_input(tmp_path, name, audio, sr, words):
    with pytest.raises(AudioError, match=words):
        write_audio(tmp_path / name, audio, sr)
    assert not (tmp_path / "x.wav").exists()


def test_find_audio_files_recursive_sorted_skips_hidden(tmp_path):
    for rel in ["b/2.flac", "a/1.WAV", "a/deep/3.mp3", "top.ogg", "notes.txt", ".hidden.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "c.wav").write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_audio_files(tmp_path)]
    assert found == ["a/1.WAV", "a/deep/3.mp3", "b/2.flac", "top.ogg"]
    assert find_audio_files(tmp_path / "top.ogg") == [tmp_path / "top.ogg"]
    with pytest.raises(AudioError, match="not found"):
        find_audio_files(tmp_path / "nope")
    with pytest.raises(AudioError, match="not an audio"):
        find_audio_files(tmp_path / "notes.txt")
