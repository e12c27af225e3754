"""Helpers shared by the discriminators: input checks, DAC preprocessing, layers, float32 STFT."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm


def check_input(audio: Tensor, min_length: int, owner: str) -> Tensor:
    """Validate a discriminator input and return it as float32 (B, L).

    Args:
        audio: (B, L) waveform batch.
        min_length: fewest samples the discriminator can judge.
        owner: class name used in the error message.

    Raises:
        ValueError: if ``audio`` is not (B, L) or shorter than ``min_length``.
    """
    if audio.dim() != 2:
        raise ValueError(
            f"{owner} expects audio of shape (B, L), got {tuple(audio.shape)}; "
            "squeeze the channel dimension of mono (B, 1, L) audio first"
        )
    if audio.shape[-1] < min_length:
        raise ValueError(
            f"{owner} needs at least {min_length} samples per clip, got {audio.shape[-1]}; "
            "train on longer segments or use smaller STFT windows"
        )
    return audio.float()


def dac_preprocess(audio: Tensor, peak: float = 0.8, eps: float = 1e-9) -> Tensor:
    """Remove the DC offset and peak-normalise each clip (docs/esc.md §13.6, the DAC discriminator
    input).

    The reference applies this once in front of all its sub-discriminators; because it is a pure
    per-clip function, applying it inside each of MPD and MRD gives the same result and keeps each
    discriminator usable on its own. It makes the discriminator blind to gain and DC, so the
    generator is judged on waveform shape, not loudness (the mel loss takes care of level).

    Args:
        audio: (B, L) float waveform.
        peak: absolute peak value after normalisation.
        eps: guards the division for silent clips.

    Returns:
        (B, L) waveform with zero mean and ``max|x| = peak`` (all zeros stays all zeros).
    """
    audio = audio - audio.mean(dim=-1, keepdim=True)
    return peak * audio / (audio.abs().amax(dim=-1, keepdim=True) + eps)


def wn_conv(conv: nn.Module) -> nn.Module:
    """Weight-normalise a convolution (g and v parameters, the non-deprecated parametrization)."""
    return weight_norm(conv)


def complex_spectrogram(audio: Tensor, n_fft: int, hop: int, normalized: bool = False) -> Tensor:
    """Complex STFT of already padded audio as a real image, always computed in float32.

    No centring is applied (callers pad as their reference does); the periodic Hann window spans
    ``n_fft``. Autocast is switched off because bf16 FFTs are inaccurate and unsupported on CPU.

    Args:
        audio: (B, L) waveform with ``L >= n_fft``.
        n_fft: window and FFT size.
        hop: hop in samples.
        normalized: divide by the window's L2 norm (torchaudio's ``normalized=True``).

    Returns:
        (B, 2, frames, n_fft // 2 + 1) float32 tensor: channel 0 real, channel 1 imaginary; time on
        the height axis and frequency on the width axis.
    """
    with torch.autocast(device_type=audio.device.type, enabled=False):
        window = torch.hann_window(n_fft, device=audio.device, dtype=torch.float32)
        spec = torch.stft(
            audio.float(), n_fft, hop, window=window, center=False, return_complex=True
        )
        if normalized:
            spec = spec / window.pow(2).sum().sqrt()
        # (B, F, T) complex -> (B, 2, T, F) real
        return torch.view_as_real(spec).permute(0, 3, 2, 1)


def conv_stack(convs: nn.ModuleList, x: Tensor, slope: float) -> tuple[Tensor, list[Tensor]]:
    """Run convs each followed by LeakyReLU(``slope``); returns the output and every activation.

    The activations are the features compared by the feature-matching loss.
    """
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), slope)
        features.append(x)
    return x, features
