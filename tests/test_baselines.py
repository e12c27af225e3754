"""Classical reference codecs (escx.baselines) and ``escx eval --baseline`` through the console
script: exact payload sizes, alignment, rows shaped like a trained codec's, one-line errors."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from report_pages import parse_report
from tools_fixtures import HAVE_OPUS, SPEECH, speech_like, write_wav

from escx.baselines import BASELINES, load_baseline
from escx.evaluation import evaluate_baselines

ESCX = str(Path(sys.executable).parent / "escx")
HAVE_CODEC2 = importlib.util.find_spec("pycodec2") is not None
needs_opus = pytest.mark.skipif(
    not HAVE_OPUS,
    reason="needs libopus and opuslib (apt-get install libopus0; the baselines extra)",
)
needs_codec2 = pytest.mark.skipif(not HAVE_CODEC2, reason="needs pycodec2 (the baselines extra)")


def _speech_files(count: int) -> list[Path]:
    files = sorted((SPEECH / "val").glob("*.flac"))[:count]
    if len(files) < count:
        pytest.skip(f"real speech not found under {SPEECH / 'val'} (only in the dev checkout)")
    return files


def _lag(decoded: np.ndarray, source: np.ndarray) -> int:
    """Delay of ``decoded`` against ``source`` in samples (cross-correlation peak)."""
    spectrum = np.fft.rfft(decoded, 2 * len(source)) * np.conj(np.fft.rfft(source, 2 * len(source)))
    lags = np.fft.irfft(spectrum)
    peak = int(np.argmax(lags))
    return peak if peak < len(source) else peak - 2 * len(source)


@needs_opus
def test_opus_is_exact_cbr_aligned_and_keeps_its_bandwidth_choice():
    (path,) = _speech_files(1)
    audio, _ = sf.read(path, dtype="float32")
    opus = load_baseline("opus")
    frames = math.ceil((audio.size + 104) / 320)  # 20 ms frames over input + look-ahead
    for kbps, packet, band in ((6, 15, "narrowband"), (9, 23, "narrowband"), (12, 30, "wideband")):
        coded = opus.code(audio, kbps)
        assert coded.payload_bytes == frames * packet  # CBR: every packet the same size
        assert coded.audio.shape == audio.shape and coded.audio.dtype == np.float32
        assert coded.bandwidth == band  # libopus' own choice at 16 kHz input
        assert abs(_lag(coded.audio, audio)) <= 2  # the 104-sample look-ahead is trimmed
    assert opus.version().startswith("libopus 1.")
    with pytest.raises(ValueError, match="opus does not code at 7 kbps; choose from 6, 8, 9"):
        opus.code(audio, 7)


@needs_codec2
def test_codec2_codes_frame_by_frame_at_its_bitrates():
    audio = speech_like(16000, seed=3)  # 1 s
    codec2 = load_baseline("codec2")
    delay = 160  # samples at 8 kHz, padded on before coding
    for kbps, samples, size in ((3.2, 160, 8), (1.2, 320, 6)):
        coded = codec2.code(audio, kbps)
        frames = math.ceil((8000 + delay) / samples)
        assert coded.payload_bytes == frames * size
        assert coded.audio.shape == audio.shape and coded.bandwidth == "narrowband"
        # Every frame decoded on its own: the output carries energy to the end, not garbage.
        tail = coded.audio[-4000:]
        assert np.isfinite(coded.audio).all() and 1e-4 < np.abs(tail).mean() < 1.0
    assert codec2.version().startswith("pycodec2 ")


@needs_opus
def test_evaluate_baselines_rows_are_shaped_like_a_trained_codecs():
    clips = [torch.from_numpy(speech_like(16000, seed=n)) for n in (1, 2)]
    heard: list[tuple[int, object]] = []
    rows = evaluate_baselines(
        ["opus"], clips, bitrates={"opus": [9]}, with_models=False,
        listen=lambda index, name, column, audio: heard.append((index, column)),
    )  # fmt: skip
    (row,) = rows
    assert row["codec"] == "opus" and row["kbps"] == 9.0 and row["files"] == 2
    assert row["kbps_measured"] == pytest.approx(8 * 2 * 23 * 51 / 2.0 / 1000)  # 51 frames each
    assert row["clips_scored"] == 2 and row["dropped"]["pesq"] == 0
    for key in ("pesq", "stoi", "estoi", "sisdr", "mel_distance", "encode_rtf", "decode_rtf"):
        assert row[key] is not None, key
    assert row["library"].startswith("libopus") and row["bandwidth"] == "narrowband"
    assert heard == [(0, None), (0, "opus 9 kbps"), (1, None), (1, "opus 9 kbps")]


def test_unknown_baselines_list_the_valid_names():
    with pytest.raises(ValueError, match="unknown baseline 'foo'; choose from opus, codec2"):
        load_baseline("foo")
    assert list(BASELINES) == ["opus", "codec2"]


@needs_opus
def test_escx_eval_baseline_opus_on_real_speech(tmp_path):
    """The user's path: ``escx eval --baseline opus`` (no model) writes rows with the measured
    kbps, the library, the bandwidth libopus chose, and players for each bitrate."""
    data = tmp_path / "data"
    for path in _speech_files(2):
        write_wav(data / f"{path.stem}.wav", sf.read(path, dtype="float32")[0][:32000])  # 2 s
    done = subprocess.run(
        [ESCX, "eval", "--baseline", "opus", "--data", "data", "-o", "out", "--no-model-metrics",
         "--no-stoi"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [(r["codec"], r["kbps"]) for r in rows] == [("opus", 6.0), ("opus", 9.0), ("opus", 12.0)]
    for row, low, high in zip(rows, (6.0, 9.2, 12.0), (6.2, 9.5, 12.3), strict=True):
        assert low < row["kbps_measured"] < high  # CBR packets; the last frame padded
        assert row["library"].startswith("libopus") and row["clips_scored"] == 2
    assert [r["bandwidth"] for r in rows] == ["narrowband", "narrowband", "wideband"]
    assert 2.0 < rows[1]["pesq"] < rows[2]["pesq"]  # coded speech, better with bitrate
    page = parse_report(tmp_path / "out" / "report.html")
    (listen,) = [t for t in page.tables if t.cls == "listen"]
    assert listen.header == ["clip", "original", "opus 6 kbps", "opus 9 kbps", "opus 12 kbps"]
    assert "measured kbps" in (tmp_path / "out" / "results.md").read_text()


# case -> (arguments after `escx eval`, PYTHONPATH entries of fake modules, words of the line)
BAD = {
    "unknown baseline": (["--baseline", "foo", "--data", "data"], None,
                         "unknown baseline 'foo'; choose from opus, codec2"),
    "no libopus": (["--baseline", "opus", "--data", "data", "-o", "out"], "libopus",
                   "--baseline opus needs libopus: apt-get install libopus0"),
    "no pycodec2": (["--baseline", "codec2", "--data", "data", "-o", "out"], "pycodec2",
                    'needs pycodec2 (its wheel carries libcodec2): pip install -c constraints.txt'),
    "nothing to evaluate": (["--data", "data", "-o", "out"], None,
                            "give --model CKPT, --baseline NAME, or both"),
    "streams without model": (["--baseline", "opus", "--data", "data", "--streams", "1"], None,
                              "--streams selects a trained codec's bitrates"),
}  # fmt: skip

# Fake modules standing in for missing libraries: opuslib raises a bare Exception when ctypes
# cannot find libopus, and an ImportError when it is not installed.
FAKES = {
    "libopus": ("opuslib/__init__.py", "raise Exception('Could not find Opus library.')\n"),
    "opuslib": ("opuslib/__init__.py", "raise ImportError('No module named opuslib')\n"),
    "pycodec2": ("pycodec2.py", "raise ImportError('No module named pycodec2')\n"),
}


@pytest.mark.parametrize(
    ("case", "launcher"),
    [(case, "escx") for case in BAD] + [("unknown baseline", "python -m escx.cli")],
)
def test_bad_baseline_input_is_one_line(tmp_path, case, launcher):
    args, fake, words = BAD[case]
    write_wav(tmp_path / "data" / "a.wav", speech_like(8000))
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if fake is not None:
        name, code = FAKES[fake]
        (tmp_path / "fakes" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fakes" / name).write_text(code)
        env["PYTHONPATH"] = str(tmp_path / "fakes")
    command = [ESCX] if launcher == "escx" else [sys.executable, "-m", "escx.cli"]
    done = subprocess.run(
        [*command, "eval", *args], cwd=tmp_path, capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("escx: error:") and words in lines[0], lines
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["data"] + (["fakes"] if fake else [])
    )
