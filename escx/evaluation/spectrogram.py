"""Spectrogram images for the listening report: log-magnitude STFT as a PNG, without a figure.

Drawn straight into pixels (a colormap lookup and PIL) rather than with a matplotlib figure: a
report holds one image per clip and bitrate, and a figure per image would dominate its writing
time. Every image uses the same absolute dB range, so an original and its reconstructions are
compared colour for colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image
from torch import Tensor

from escx.atomic import atomic_path

N_FFT = 512  # 32 ms at 16 kHz: resolves harmonics of speech
HOP = 128
HEIGHT = 160  # pixels; frequency bins are resampled to this height
DB_RANGE = (-70.0, 30.0)  # dB of |STFT| (Hann-windowed, unnormalised) mapped to the colormap


def spectrogram_pixels(audio: Tensor, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """RGB pixels ``(HEIGHT, frames, 3)`` uint8 of the log-magnitude spectrogram of ``(L,)`` audio,
    low frequencies at the bottom."""
    audio = torch.nan_to_num(audio.detach().float().cpu())
    if audio.numel() < n_fft:
        audio = torch.nn.functional.pad(audio, (0, n_fft - audio.numel()))
    spec = torch.stft(audio, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs()
    db = 20.0 * torch.log10(spec.clamp(min=1e-6))
    low, high = DB_RANGE
    level = ((db - low) / (high - low)).clamp(0.0, 1.0).flip(0).numpy()
    rgba = colormaps["magma"](level, bytes=True)
    image = Image.fromarray(rgba[..., :3]).resize((level.shape[1], HEIGHT), Image.BILINEAR)
    return np.asarray(image)


def save_spectrogram(audio: Tensor, path: Path) -> Path:
    """Write the spectrogram of ``(L,)`` audio as a PNG at ``path`` (atomically); returns the
    path."""
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(spectrogram_pixels(audio)).save(tmp, format="PNG", optimize=True)
    return path
