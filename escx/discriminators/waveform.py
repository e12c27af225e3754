"""Multi-scale waveform discriminator (MelGAN / HiFi-GAN MSD)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from escx.discriminators.base import DISCRIMINATORS, Discriminator
from escx.discriminators.common import check_input, conv_stack, dac_preprocess, wn_conv

LEAKY_SLOPE = 0.2  # MelGAN's value (HiFi-GAN uses 0.1)


class ScaleSubDiscriminator(nn.Module):
    """MelGAN's 1-D stack: a wide input conv, grouped strided convs, then two narrow convs.

    The strided convs use 4 input channels per group, which keeps the wide (41-tap) kernels cheap.

    Args:
        channels: width of the input conv; each strided conv multiplies it by its stride.
        max_channels: upper bound on the width.
        strides: stride of each grouped (41-tap) conv.
    """

    def __init__(self, channels: int, max_channels: int, strides: Sequence[int]) -> None:
        super().__init__()
        convs = [nn.Conv1d(1, channels, 15, padding=7)]
        width = channels
        for stride in strides:
            out = min(width * stride, max_channels)
            groups = max(1, width // 4)
            if width % groups or out % groups:
                raise ValueError(
                    f"cannot group a {width}->{out} conv in {groups} groups; "
                    "use channels and max_channels that are powers of 2 (>= 4)"
                )
            convs.append(nn.Conv1d(width, out, 41, stride, padding=20, groups=groups))
            width = out
        convs.append(nn.Conv1d(width, width, 5, padding=2))
        self.convs = nn.ModuleList(wn_conv(c) for c in convs)
        self.post = wn_conv(nn.Conv1d(width, 1, 3, padding=1))

    def forward(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Score one batch.

        Args:
            audio: (B, L) waveform (possibly downsampled).

        Returns:
            ``(logits (B, 1, L'), features)``, each feature (B, C_i, L_i).
        """
        x, features = conv_stack(self.convs, audio.unsqueeze(1), LEAKY_SLOPE)
        return self.post(x), features


@DISCRIMINATORS.register
class MultiScaleDiscriminator(Discriminator):
    """MelGAN/HiFi-GAN multi-scale waveform discriminator: grouped Conv1d stacks on pooled audio.

    Scale ``i`` judges the audio average-pooled ``i`` times (kernel 4, stride 2), so the coarser
    scales see longer context with the same kernels. Weight norm on every conv.

    Args:
        scales: number of sub-discriminators (each one pooling step coarser than the last).
        channels: width of the first conv.
        max_channels: upper bound on the width.
        strides: strides of the grouped convs.
        normalize_input: apply DAC's DC removal and peak normalisation first (MelGAN does not).
    """

    def __init__(
        self,
        scales: int = 3,
        channels: int = 16,
        max_channels: int = 1024,
        strides: Sequence[int] = (4, 4, 4, 4),
        normalize_input: bool = False,
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        if channels < 1 or max_channels < channels:
            raise ValueError(
                f"need 1 <= channels <= max_channels, got channels={channels}, "
                f"max_channels={max_channels}"
            )
        self.scales = scales
        self.normalize_input = normalize_input
        self.discriminators = nn.ModuleList(
            ScaleSubDiscriminator(channels, max_channels, [int(s) for s in strides])
            for _ in range(scales)
        )
        # Smallest input whose coarsest (pooled scales - 1 times) version still has a sample.
        self.min_length = 2 ** (scales - 1)

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Score a batch at every scale.

        Args:
            audio: (B, L) waveform, ``L >= 2 ** (scales - 1)``.

        Returns:
            ``(logits, features)`` with one entry per scale (see :class:`ScaleSubDiscriminator`).
        """
        x = check_input(audio, self.min_length, type(self).__name__)
        if self.normalize_input:
            x = dac_preprocess(x)
        logits, features = [], []
        for i, sub in enumerate(self.discriminators):
            if i:
                x = F.avg_pool1d(x.unsqueeze(1), 4, 2, padding=1, count_include_pad=False).squeeze(
                    1
                )
            logit, feats = sub(x)
            logits.append(logit)
            features.append(feats)
        return logits, features
