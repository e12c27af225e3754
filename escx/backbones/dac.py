"""DAC's convolutional waveform encoder and decoder (Kumar et al. 2023, "High-Fidelity Audio
Compression with Improved RVQGAN"; docs/esc.md §18).

Encoder: a width-``d`` 7-tap convolution, then one block per rate (three residual units with
dilations 1, 3, 9, a Snake activation and a strided convolution of kernel ``2 * rate`` that
doubles the width), then Snake and a 3-tap convolution to the latent width. Decoder: a 7-tap
convolution to width ``D``, then one block per rate (Snake, a transposed convolution of kernel
``2 * rate`` that halves the width, three residual units), then Snake, a 7-tap convolution to one
channel and ``tanh``. Every convolution is weight-normalised; Snake is
``x + sin(alpha x)^2 / alpha`` with a learned ``alpha`` per channel.

Why the architecture is written here rather than imported: ``descript-audio-codec`` does not
import with a CPU build of torch (its torchaudio is a CUDA build), pins protobuf below 3.20 and
uses the old weight norm, whose modules cannot be deep-copied; ``transformers.DacModel`` has no
weight norm, discriminators or losses. These modules use torch's parametrized weight norm
(deep-copyable; gains count as parameters, as in the released model).

One deliberate difference: a transposed convolution with an odd rate gets ``output_padding`` 1,
so every decoder block upsamples exactly ``rate`` times and the output has as many samples as the
encoder consumed (DAC's own decoder returns 8 samples short at 16 kHz). Weights are unchanged, and
so is every output sample except the last few of the signal.

These are not :class:`~escx.backbones.base.Encoder` / :class:`~escx.backbones.base.Decoder`
(which map a complex STFT), so they are not in the backbone registries: the codec
:class:`~escx.codecs.waveform.DAC` builds them from its size arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

DILATIONS = (1, 3, 9)


def snake(x: Tensor, alpha: Tensor) -> Tensor:
    """Snake activation ``x + sin(alpha x)^2 / alpha`` (Ziyin et al. 2020), DAC's 1e-9 guard."""
    return x + (alpha + 1e-9).reciprocal() * torch.sin(alpha * x).pow(2)


class Snake1d(nn.Module):
    """Snake with one learned frequency per channel, applied to (B, C, T)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        return snake(x, self.alpha)


def wn_conv1d(c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1,
              padding: int = 0) -> nn.Module:  # fmt: skip
    """A weight-normalised Conv1d. Its bias starts at zero: DAC's ``init_weights`` zeroes conv
    biases (its truncated-normal weight init does not survive the old weight norm, so the
    weights keep PyTorch's default init, as here)."""
    conv = nn.Conv1d(c_in, c_out, kernel, stride, padding, dilation)
    nn.init.zeros_(conv.bias)
    return weight_norm(conv)


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv7_dilated(snake(x))))``; the dilated conv keeps the length.

    Args:
        channels: width in and out.
        dilation: dilation of the 7-tap convolution (receptive field ``6 * dilation + 1``).
    """

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(channels),
            wn_conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            Snake1d(channels),
            wn_conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


def encoder_block(width: int, rate: int) -> nn.Sequential:
    """Residual units at ``width // 2`` channels, a strided conv to ``width`` (T -> T / rate)."""
    half = width // 2
    return nn.Sequential(
        *(ResidualUnit(half, d) for d in DILATIONS),
        Snake1d(half),
        wn_conv1d(half, width, 2 * rate, stride=rate, padding=math.ceil(rate / 2)),
    )


def decoder_block(c_in: int, c_out: int, rate: int) -> nn.Sequential:
    """Snake, a transposed conv (T -> T * rate exactly, see the module notes), residual units."""
    up = nn.ConvTranspose1d(
        c_in, c_out, 2 * rate, stride=rate, padding=math.ceil(rate / 2), output_padding=rate % 2
    )
    return nn.Sequential(
        Snake1d(c_in), weight_norm(up), *(ResidualUnit(c_out, d) for d in DILATIONS)
    )


def check_rates(rates: Sequence[int], name: str) -> tuple[int, ...]:
    """Validate a list of strides: each an int >= 2 (kernel 2 * rate keeps lengths exact)."""
    rates = tuple(rates)
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 2 for r in rates):
        raise ValueError(f"{name} must be a non-empty list of integers >= 2, got {list(rates)}")
    return rates


class DACEncoder(nn.Module):
    """Waveform (B, 1, L) -> latent (B, latent_dim, L / prod(rates)).

    Args:
        dim: width of the first convolution; doubled by every block.
        rates: stride of every block (16 kHz DAC: 2, 4, 5, 8 -> 320 samples per frame).
        latent_dim: output width (DAC: ``dim * 2 ** len(rates)``, 1024).
    """

    def __init__(self, dim: int = 64, rates: Sequence[int] = (2, 4, 5, 8),
                 latent_dim: int = 1024) -> None:  # fmt: skip
        super().__init__()
        self.rates = check_rates(rates, "encoder_rates")
        layers: list[nn.Module] = [wn_conv1d(1, dim, 7, padding=3)]
        width = dim
        for rate in self.rates:
            width *= 2
            layers.append(encoder_block(width, rate))
        layers += [Snake1d(width), wn_conv1d(width, latent_dim, 3, padding=1)]
        self.block = nn.Sequential(*layers)
        self.hop_length = math.prod(self.rates)

    def forward(self, audio: Tensor) -> Tensor:
        """(B, 1, L) with L a multiple of ``hop_length`` -> (B, latent_dim, L / hop_length)."""
        return self.block(audio)


class DACDecoder(nn.Module):
    """Latent (B, latent_dim, T) -> waveform (B, T * prod(rates)) in [-1, 1].

    Args:
        latent_dim: input width.
        dim: width after the first convolution; halved by every block.
        rates: upsampling factor of every block (16 kHz DAC: 8, 5, 4, 2).
    """

    def __init__(self, latent_dim: int = 1024, dim: int = 1536,
                 rates: Sequence[int] = (8, 5, 4, 2)) -> None:  # fmt: skip
        super().__init__()
        self.rates = check_rates(rates, "decoder_rates")
        if dim % 2 ** len(self.rates):
            raise ValueError(
                f"decoder_dim {dim} is halved {len(self.rates)} times; use a multiple of "
                f"{2 ** len(self.rates)}"
            )
        layers: list[nn.Module] = [wn_conv1d(latent_dim, dim, 7, padding=3)]
        for i, rate in enumerate(self.rates):
            layers.append(decoder_block(dim // 2**i, dim // 2 ** (i + 1), rate))
        out = dim // 2 ** len(self.rates)
        layers += [Snake1d(out), wn_conv1d(out, 1, 7, padding=3), nn.Tanh()]
        self.block = nn.Sequential(*layers)
        self.hop_length = math.prod(self.rates)

    def forward(self, z: Tensor, refine: Callable[[int, Tensor], Tensor] | None = None) -> Tensor:
        """Decode.

        Args:
            z: (B, latent_dim, T), or (B, latent_dim, 1, T) as a bottleneck quantizer passes it.
            refine: ignored; this decoder has no stages a cross-scale quantizer could refine.

        Returns:
            (B, T * hop_length) waveform.
        """
        if z.dim() == 4:
            z = z.squeeze(2)
        return self.block(z).squeeze(1)
