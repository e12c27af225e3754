"""Mel filterbanks and ESC's multi-scale magnitude mel spectrogram.

ESC (docs/esc.md §13.5, §14) computes its mel loss and its mel-distance metric on 7 scales: windows
32 ... 2048 samples (n_fft = window, hop = window / 4, periodic Hann, centred, reflect padding)
with 5 ... 320 HTK mel bands over 0-8 kHz, on magnitude (power 1) spectra. The reference uses
torchaudio's ``MelSpectrogram``; torchaudio is not a dependency here, so the filterbank is built
from the mel-scale formulas and the STFT is ``torch.stft``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ESC_MEL_WINDOWS: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048)
ESC_MEL_BANDS: tuple[int, ...] = (5, 10, 20, 40, 80, 160, 320)

# Slaney (Auditory Toolbox) scale: linear below 1 kHz, logarithmic above.
_SLANEY_F_SP = 200.0 / 3.0
_SLANEY_MIN_LOG_HZ = 1000.0
_SLANEY_MIN_LOG_MEL = _SLANEY_MIN_LOG_HZ / _SLANEY_F_SP
_SLANEY_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(freq: Tensor, htk: bool = True) -> Tensor:
    """Convert frequencies in Hz to mels (HTK: ``2595 log10(1 + f / 700)``, else Slaney)."""
    if htk:
        return 2595.0 * torch.log10(1.0 + freq / 700.0)
    mel = freq / _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_MEL + torch.log(freq / _SLANEY_MIN_LOG_HZ) / _SLANEY_LOGSTEP
    return torch.where(freq >= _SLANEY_MIN_LOG_HZ, log_part, mel)


def mel_to_hz(mel: Tensor, htk: bool = True) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    freq = mel * _SLANEY_F_SP
    log_part = _SLANEY_MIN_LOG_HZ * torch.exp(_SLANEY_LOGSTEP * (mel - _SLANEY_MIN_LOG_MEL))
    return torch.where(mel >= _SLANEY_MIN_LOG_MEL, log_part, freq)


def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    htk: bool = True,
    norm: str | None = None,
) -> Tensor:
    """Triangular mel filterbank, without area normalisation by default.

    Filter ``m`` rises linearly from mel point ``m`` to a peak of 1 at point ``m + 1`` and falls
    to 0 at point ``m + 2``, the ``n_mels + 2`` points being equally spaced in mel between
    ``f_min`` and ``f_max``. This is what torchaudio's
    ``melscale_fbanks(norm=None, mel_scale="htk")`` returns (transposed), which ESC uses.
    ``htk=False, norm="slaney"`` gives librosa's default filterbank (Slaney scale, each triangle
    scaled by ``2 / (width in Hz)`` so it has unit area), which DAC's mel loss uses.

    Args:
        sample_rate: sampling rate in Hz.
        n_fft: FFT size; the filterbank covers its ``n_fft // 2 + 1`` one-sided bins.
        n_mels: number of mel bands.
        f_min: lowest frequency in Hz.
        f_max: highest frequency in Hz; ``None`` means ``sample_rate / 2``.
        htk: HTK mel scale (ESC) if True, Slaney scale otherwise.
        norm: None (ESC) or "slaney" (unit-area triangles, librosa's default).

    Returns:
        Filterbank of shape ``(n_mels, n_fft // 2 + 1)``, float32; ``fb @ spec`` maps a
        ``(..., n_fft // 2 + 1, T)`` spectrogram to ``(..., n_mels, T)``.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if n_fft < 2 or n_mels < 1:
        raise ValueError(f"mel_filterbank needs n_fft >= 2 and n_mels >= 1, got {n_fft}, {n_mels}")
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"mel_filterbank needs 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, "
            f"f_max={f_max}, sample_rate={sample_rate}"
        )
    if norm not in (None, "slaney"):
        raise ValueError(f"mel_filterbank norm must be None or 'slaney', got {norm!r}")
    n_freqs = n_fft // 2 + 1
    # float64 for the break points so the triangles are exact; torchaudio also spaces the bins
    # over [0, sample_rate // 2].
    bin_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float64)
    lo, hi = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64), htk)
    points = mel_to_hz(torch.linspace(lo.item(), hi.item(), n_mels + 2, dtype=torch.float64), htk)
    widths = points[1:] - points[:-1]  # (n_mels + 1,)
    offsets = points[None, :] - bin_freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -offsets[:, :-2] / widths[:-1]
    falling = offsets[:, 2:] / widths[1:]
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)  # (n_freqs, n_mels)
    if norm == "slaney":
        fb = fb * (2.0 / (points[2:] - points[:-2]))[None, :]
    return fb.T.contiguous().float()


class MultiScaleMel(nn.Module):
    """Magnitude mel spectrograms at several STFT resolutions (ESC's 7 scales by default).

    Each scale uses ``n_fft = window``, ``hop = window // 4``, a periodic Hann window, centred
    frames with reflect padding, magnitude (``power=1``) and an HTK mel filterbank. Windows and
    filterbanks are non-persistent buffers: they follow ``.to(device)`` but stay out of
    checkpoints. The computation runs in float32 even under autocast, because the log-mel terms
    built on it are sensitive to bf16 rounding of small magnitudes.

    Args:
        sample_rate: sampling rate in Hz.
        windows: window (and FFT) sizes, one per scale.
        n_mels: mel bands, one per scale.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz; ``None`` means ``sample_rate / 2``.
        power: exponent of the magnitude (1 = magnitude, 2 = power).
        mel_scale: "htk" (ESC) or "slaney" (librosa's default scale, DAC).
        norm: filterbank normalisation: None (ESC) or "slaney" (unit-area triangles, DAC).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        windows: Sequence[int] = ESC_MEL_WINDOWS,
        n_mels: Sequence[int] = ESC_MEL_BANDS,
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        mel_scale: str = "htk",
        norm: str | None = None,
    ) -> None:
        super().__init__()
        windows, n_mels = tuple(windows), tuple(n_mels)
        if len(windows) != len(n_mels) or not windows:
            raise ValueError(
                f"MultiScaleMel needs one n_mels per window, got {len(windows)} windows and "
                f"{len(n_mels)} n_mels"
            )
        if any(w < 4 for w in windows):
            raise ValueError(f"MultiScaleMel windows must be >= 4 samples, got {windows}")
        if mel_scale not in ("htk", "slaney"):
            raise ValueError(f"mel_scale must be 'htk' or 'slaney', got {mel_scale!r}")
        self.sample_rate = sample_rate
        self.windows = windows
        self.n_mels = n_mels
        self.power = power
        for i, (win, bands) in enumerate(zip(windows, n_mels, strict=True)):
            fb = mel_filterbank(sample_rate, win, bands, f_min, f_max, mel_scale == "htk", norm)
            self.register_buffer(f"fb{i}", fb, persistent=False)
            window = torch.hann_window(win, periodic=True)
            self.register_buffer(f"window{i}", window, persistent=False)

    @property
    def num_scales(self) -> int:
        """Number of STFT resolutions."""
        return len(self.windows)

    def forward(self, audio: Tensor) -> list[Tensor]:
        """Compute the mel spectrograms.

        Args:
            audio: waveform ``(B, L)``; ``L`` must exceed half the largest window (reflect pad).

        Returns:
            One float32 tensor per scale, ``(B, n_mels[i], L // hop[i] + 1)``.
        """
        if audio.dim() != 2:
            raise ValueError(
                f"MultiScaleMel expects audio of shape (B, L), got {tuple(audio.shape)}; "
                "squeeze the channel dimension of mono audio first"
            )
        if audio.shape[-1] <= max(self.windows) // 2:
            raise ValueError(
                f"MultiScaleMel needs more than {max(self.windows) // 2} samples per clip "
                f"(half its largest window), got {audio.shape[-1]}; use longer clips"
            )
        mels = []
        with torch.autocast(device_type=audio.device.type, enabled=False):
            audio = audio.float()
            for i, win in enumerate(self.windows):
                spec = torch.stft(
                    audio,
                    n_fft=win,
                    hop_length=win // 4,
                    win_length=win,
                    window=getattr(self, f"window{i}"),
                    center=True,
                    pad_mode="reflect",
                    return_complex=True,
                ).abs()  # (B, F, T)
                if self.power != 1.0:
                    spec = spec.pow(self.power)
                mels.append(torch.matmul(getattr(self, f"fb{i}"), spec))
        return mels
