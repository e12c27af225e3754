"""Multi-period waveform discriminator (HiFi-GAN MPD, in DAC's form; docs/esc.md §13.6)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from escx.discriminators.base import DISCRIMINATORS, Discriminator
from escx.discriminators.common import check_input, conv_stack, dac_preprocess, wn_conv

LEAKY_SLOPE = 0.1


class PeriodSubDiscriminator(nn.Module):
    """Judges the waveform folded into a (L / period, period) image with (k, 1) convolutions.

    Folding lets the convolutions compare samples exactly ``period`` apart, which exposes periodic
    structure (pitch) that a plain 1-D stack would blur.

    Args:
        period: fold width in samples.
        channels: output channels of the conv stack; every layer but the last strides 3 in time.
        kernel_size: kernel height of the stack.
        stride: time stride of all but the last stack layer.
    """

    def __init__(
        self,
        period: int,
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        kernel_size: int = 5,
        stride: int = 3,
    ) -> None:
        super().__init__()
        self.period = period
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            wn_conv(
                nn.Conv2d(
                    c_in,
                    c_out,
                    (kernel_size, 1),
                    (stride if i < len(channels) - 1 else 1, 1),
                    padding=(kernel_size // 2, 0),
                )
            )
            for i, (c_in, c_out) in enumerate(itertools.pairwise(widths))
        )
        self.post = wn_conv(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Score one batch.

        Args:
            audio: (B, L) preprocessed waveform with ``L >= period``.

        Returns:
            ``(logits (B, 1, T', period), features)``: the features are the activations of the
            conv stack, each (B, C, T_i, period).
        """
        # Reflect-pad to the next multiple of the period. (DAC pads a whole extra period when L is
        # already a multiple; we do not, which changes no parameter and no receptive field.)
        extra = -audio.shape[-1] % self.period
        x = F.pad(audio.unsqueeze(1), (0, extra), mode="reflect") if extra else audio.unsqueeze(1)
        x = x.view(x.shape[0], 1, -1, self.period)
        x, features = conv_stack(self.convs, x, LEAKY_SLOPE)
        return self.post(x), features


@DISCRIMINATORS.register
class MultiPeriodDiscriminator(Discriminator):
    """HiFi-GAN/DAC multi-period discriminator: weight-normed 2-D convs over period-folded audio.

    The defaults are DAC's (and so ESC-Base(adv)'s): periods 2, 3, 5, 7, 11, channels
    32-128-512-1024-1024 with (5, 1) kernels, LeakyReLU 0.1, 41,105,770 parameters.

    Args:
        periods: one sub-discriminator per fold width (samples).
        channels: output channels of each sub-discriminator's conv stack.
        normalize_input: apply DAC's DC removal and 0.8 peak normalisation first
            (:func:`escx.discriminators.common.dac_preprocess`).
    """

    def __init__(
        self,
        periods: Sequence[int] = (2, 3, 5, 7, 11),
        channels: Sequence[int] = (32, 128, 512, 1024, 1024),
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        if not periods or any(int(p) < 1 for p in periods):
            raise ValueError(f"periods must be a non-empty list of positive ints, got {periods!r}")
        if not channels or any(int(c) < 1 for c in channels):
            raise ValueError(
                f"channels must be a non-empty list of positive ints, got {channels!r}"
            )
        self.periods = [int(p) for p in periods]
        self.normalize_input = normalize_input
        self.discriminators = nn.ModuleList(
            PeriodSubDiscriminator(p, [int(c) for c in channels]) for p in self.periods
        )

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Score a batch with every period.

        Args:
            audio: (B, L) waveform, ``L >= max(periods)``.

        Returns:
            ``(logits, features)`` with one entry per period (see :class:`PeriodSubDiscriminator`).
        """
        audio = check_input(audio, max(self.periods), type(self).__name__)
        if self.normalize_input:
            audio = dac_preprocess(audio)
        logits, features = [], []
        for sub in self.discriminators:
            logit, feats = sub(audio)
            logits.append(logit)
            features.append(feats)
        return logits, features
