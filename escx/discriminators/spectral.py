"""Complex-STFT discriminators: DAC's multi-band MRD (docs/esc.md §13.6) and EnCodec's MS-STFT."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.discriminators.base import DISCRIMINATORS, Discriminator
from escx.discriminators.common import (
    check_input,
    complex_spectrogram,
    conv_stack,
    dac_preprocess,
    wn_conv,
)

DAC_BAND_EDGES = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def _check_windows(windows: Sequence[int], hop_factor: float) -> list[int]:
    windows = [int(w) for w in windows]
    if not windows or any(w < 4 for w in windows):
        raise ValueError(f"windows must be a non-empty list of ints >= 4, got {windows!r}")
    if not 0.0 < hop_factor <= 1.0:
        raise ValueError(f"hop_factor must be in (0, 1], got {hop_factor}")
    return windows


class BandSTFTSubDiscriminator(nn.Module):
    """One MRD resolution: a conv stack per frequency band, merged by a shared output conv.

    The STFT is padded like DAC's (audiotools ``match_stride``): reflect padding of
    ``(window - hop) / 2`` on the left and enough on the right for ``ceil(L / hop)`` frames.

    Args:
        window: STFT window and FFT size.
        hop: hop in samples.
        band_edges: band boundaries as fractions of the ``window // 2 + 1`` bins.
        channels: width of every conv.
    """

    def __init__(self, window: int, hop: int, band_edges: Sequence[float], channels: int) -> None:
        super().__init__()
        self.window, self.hop = window, hop
        n_bins = window // 2 + 1
        self.bands = [
            (int(lo * n_bins), int(hi * n_bins)) for lo, hi in itertools.pairwise(band_edges)
        ]
        if any(hi <= lo for lo, hi in self.bands):
            raise ValueError(
                f"band edges {list(band_edges)} give an empty band at window {window}; "
                "use increasing edges in [0, 1] that are further apart"
            )

        def stack() -> nn.ModuleList:
            # (3, 9) kernels: 3 frames by 9 bins; the frequency axis is strided 3 times by 2.
            specs = [(2, (3, 9), (1, 1), (1, 4))] + [(channels, (3, 9), (1, 2), (1, 4))] * 3
            specs.append((channels, (3, 3), (1, 1), (1, 1)))
            return nn.ModuleList(
                wn_conv(nn.Conv2d(c_in, channels, k, s, padding=p)) for c_in, k, s, p in specs
            )

        self.band_convs = nn.ModuleList(stack() for _ in self.bands)
        self.post = wn_conv(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Score one batch.

        Args:
            audio: (B, L) preprocessed waveform, ``L >= window``.

        Returns:
            ``(logits (B, 1, frames, F'), features)``: the features are the activations of every
            band stack in band order, each (B, channels, frames, F_band_i).
        """
        length = audio.shape[-1]
        left = (self.window - self.hop) // 2
        right = (math.ceil(length / self.hop) - 1) * self.hop + self.window - length - left
        padded = F.pad(audio.float().unsqueeze(1), (left, right), mode="reflect").squeeze(1)
        spec = complex_spectrogram(padded, self.window, self.hop)  # (B, 2, frames, bins)
        features, outputs = [], []
        for (lo, hi), stack in zip(self.bands, self.band_convs, strict=True):
            x, band_features = conv_stack(stack, spec[..., lo:hi], 0.1)
            features.extend(band_features)
            outputs.append(x)
        return self.post(torch.cat(outputs, dim=-1)), features


@DISCRIMINATORS.register
class MultiBandSTFTDiscriminator(Discriminator):
    """DAC's multi-resolution, multi-band complex-STFT discriminator (MRD) with weight norm.

    The defaults are DAC's (and ESC-Base(adv)'s): windows 2048/1024/512 with hop 1/4, five bands
    over [0, .1, .25, .5, .75, 1] of the bins, 32 channels, LeakyReLU 0.1, 1,413,990 parameters.
    With :class:`MultiPeriodDiscriminator` this is the 42,519,760-parameter ESC discriminator.

    Args:
        windows: one sub-discriminator per STFT window (= FFT size), in samples.
        hop_factor: hop as a fraction of the window.
        band_edges: band boundaries as fractions of the frequency bins.
        channels: conv width.
        normalize_input: apply DAC's DC removal and 0.8 peak normalisation first
            (:func:`escx.discriminators.common.dac_preprocess`).
    """

    def __init__(
        self,
        windows: Sequence[int] = (2048, 1024, 512),
        hop_factor: float = 0.25,
        band_edges: Sequence[float] = DAC_BAND_EDGES,
        channels: int = 32,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        self.windows = _check_windows(windows, hop_factor)
        edges = [float(e) for e in band_edges]
        if len(edges) < 2 or edges != sorted(edges) or edges[0] < 0.0 or edges[-1] > 1.0:
            raise ValueError(f"band_edges must be >= 2 increasing fractions in [0, 1], got {edges}")
        self.normalize_input = normalize_input
        self.discriminators = nn.ModuleList(
            BandSTFTSubDiscriminator(w, max(1, int(w * hop_factor)), edges, channels)
            for w in self.windows
        )

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Score a batch at every resolution.

        Args:
            audio: (B, L) waveform, ``L >= max(windows)``.

        Returns:
            ``(logits, features)`` with one entry per window (see
            :class:`BandSTFTSubDiscriminator`).
        """
        audio = check_input(audio, max(self.windows), type(self).__name__)
        if self.normalize_input:
            audio = dac_preprocess(audio)
        results = [sub(audio) for sub in self.discriminators]
        return [r[0] for r in results], [r[1] for r in results]


class STFTSubDiscriminator(nn.Module):
    """One EnCodec MS-STFT scale: 2-D convs over the normalised complex STFT (no padding).

    Args:
        window: STFT window and FFT size.
        hop: hop in samples.
        filters: width of every conv.
        dilations: time dilations of the three frequency-strided convs.
    """

    def __init__(self, window: int, hop: int, filters: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.window, self.hop = window, hop
        convs = [nn.Conv2d(2, filters, (3, 9), padding=(1, 4))]
        # Dilating in time widens the temporal context without losing time resolution, while the
        # frequency axis is strided by 2 (EnCodec, Defossez et al. 2022, Sec. 3.4).
        for d in dilations:
            convs.append(
                nn.Conv2d(filters, filters, (3, 9), (1, 2), dilation=(d, 1), padding=(d, 4))
            )
        convs.append(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1)))
        self.convs = nn.ModuleList(wn_conv(c) for c in convs)
        self.post = wn_conv(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Score one batch.

        Args:
            audio: (B, L) waveform, ``L >= window``.

        Returns:
            ``(logits (B, 1, frames, F'), features)``, each feature (B, filters, frames, F_i).
        """
        x = complex_spectrogram(audio, self.window, self.hop, normalized=True)
        x, features = conv_stack(self.convs, x, 0.2)
        return self.post(x), features


@DISCRIMINATORS.register
class MultiScaleSTFTDiscriminator(Discriminator):
    """EnCodec's multi-scale complex-STFT discriminator (MS-STFTD) with weight norm.

    Args:
        windows: one sub-discriminator per STFT window (= FFT size), in samples.
        hop_factor: hop as a fraction of the window.
        filters: conv width.
        dilations: time dilations of the frequency-strided convs.
        normalize_input: apply DAC's DC removal and peak normalisation first (EnCodec does not).
    """

    def __init__(
        self,
        windows: Sequence[int] = (2048, 1024, 512, 256, 128),
        hop_factor: float = 0.25,
        filters: int = 32,
        dilations: Sequence[int] = (1, 2, 4),
        normalize_input: bool = False,
    ) -> None:
        super().__init__()
        self.windows = _check_windows(windows, hop_factor)
        if any(int(d) < 1 for d in dilations):
            raise ValueError(f"dilations must be positive ints, got {dilations!r}")
        self.normalize_input = normalize_input
        self.discriminators = nn.ModuleList(
            STFTSubDiscriminator(
                w, max(1, int(w * hop_factor)), filters, [int(d) for d in dilations]
            )
            for w in self.windows
        )

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Score a batch at every scale.

        Args:
            audio: (B, L) waveform, ``L >= max(windows)``.

        Returns:
            ``(logits, features)`` with one entry per window (see :class:`STFTSubDiscriminator`).
        """
        audio = check_input(audio, max(self.windows), type(self).__name__)
        if self.normalize_input:
            audio = dac_preprocess(audio)
        results = [sub(audio) for sub in self.discriminators]
        return [r[0] for r in results], [r[1] for r in results]
