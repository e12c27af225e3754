"""Helpers shared by the codec-tool tests (test_api, test_tools, test_evaluation).

A small Swin + CS-RVQ codec (6 streams x 3 groups x 1024 entries, 1.5-9 kbps like ESC, about
140k parameters) is built from a config and saved in escx's checkpoint format, so the tools are
tested on exactly what users run, only smaller.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from escx.api import save_codec_checkpoint
from escx.config import build_codec

SAMPLE_RATE = 16000
# Opus runs where opuslib (the baselines extra) and libopus (apt-get install libopus0) are
# both installed; reports then carry Opus rows beside every trained codec.
HAVE_OPUS = importlib.util.find_spec("opuslib") is not None and bool(
    ctypes.util.find_library("opus")
)
SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"
REFERENCE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reference"

SMALL_CODEC_CONFIG = {
    "class_path": "STFTCodec",
    "init_args": {
        "encoder": {
            "class_path": "SwinEncoder",
            "init_args": {"dims": [8, 8, 12, 12, 16, 16], "heads": [1, 1, 1, 1, 1]},
        },
        "decoder": {
            "class_path": "SwinDecoder",
            "init_args": {"dims": [16, 16, 12, 12, 8, 8], "heads": [1, 1, 1, 1, 1]},
        },
        "quantizer": {"class_path": "CrossScaleRVQ", "init_args": {"codebook_dims": [4] * 6}},
    },
}


def make_checkpoint(path: Path, seed: int = 0) -> Path:
    """Save a small random codec (weights from ``seed``) as an escx checkpoint at ``path``."""
    torch.manual_seed(seed)
    codec = build_codec({"codec": SMALL_CODEC_CONFIG})
    return save_codec_checkpoint(codec, SMALL_CODEC_CONFIG, path)


def speech_like(length: int, seed: int = 0, channels: int = 0) -> np.ndarray:
    """Deterministic voiced-like test signal: a gliding harmonic tone with noise, float32.

    Returns shape (length,) or, with ``channels``, (length, channels) frames-first.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length) / SAMPLE_RATE
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 6))
    audio = 0.2 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 2.3 * t)) + 0.01 * rng.standard_normal(
        length
    )
    audio = audio.astype(np.float32)
    if channels:
        audio = np.stack([audio * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return audio


def write_wav(path: Path, audio: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16"):
    """Write samples (frames-first) with soundfile; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, sr, subtype=subtype)
    return path


def unpack_reference_state(fixture: dict) -> dict[str, torch.Tensor]:
    """The reference state dict packed in a tests/fixtures/reference file (see its README).

    Constant buffers (STFT windows, Swin position indices) are not stored; the converter ignores
    them, so they are left out here too.
    """
    packed, state = fixture["state"], {}
    offsets = {"float32": 0, "int64": 0}
    for line in zlib.decompress(packed["index"]).decode().split("\n"):
        key, dtype, shape_text = line.split("\t")
        if key.endswith(("ft.window", ".relative_position_index")):
            continue
        shape = tuple(int(s) for s in shape_text.split(",")) if shape_text else ()
        start, count = offsets[dtype], int(torch.Size(shape).numel())
        state[key] = packed[dtype][start : start + count].view(shape).clone()
        offsets[dtype] = start + count
    return state
