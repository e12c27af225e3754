"""Encoder and decoder interfaces, shared by every backbone.

Tensors are channels-first at every boundary: a feature map is (B, C, H, W) with H frequency
patches and W time patches. The time axis is never down-sampled after patching (docs/esc.md §3), so
every scale has the same W; only frequency is halved from stage to stage.

The decoder is run stage by stage so that a quantizer can act between its stages: ``refine(stage,
h) -> h`` is called on the input of every up-sampling stage. This hook keeps cross-scale
quantization outside the backbone, so Swin and conv backbones both work with RVQ and CS-RVQ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

from escx.registry import Registry

Refine = Callable[[int, Tensor], Tensor]


class FeatureShape(NamedTuple):
    """Static geometry of one feature scale: channels and frequency rows (W varies with input)."""

    channels: int
    rows: int


class Encoder(nn.Module):
    """Maps a complex STFT (B, 2, F, T) to feature maps from fine to coarse.

    Attributes:
        freq_bins: expected F.
        time_patch: STFT frames per time patch (W = T // time_patch).
    """

    freq_bins: int
    time_patch: int

    @property
    def feature_shapes(self) -> list[FeatureShape]:
        """(channels, rows) of every returned feature map, fine to coarse."""
        raise NotImplementedError

    def forward(self, spec: Tensor) -> list[Tensor]:
        """Encode.

        Args:
            spec: (B, 2, F, T) complex STFT.

        Returns:
            Feature maps (B, C_i, H_i, W), fine to coarse; the last is the bottleneck.
        """
        raise NotImplementedError


class Decoder(nn.Module):
    """Maps a bottleneck feature map back to a complex STFT through up-sampling stages."""

    @property
    def stage_shapes(self) -> list[FeatureShape]:
        """(channels, rows) of the input of every up-sampling stage, coarse to fine."""
        raise NotImplementedError

    @property
    def num_stages(self) -> int:
        """Number of up-sampling stages."""
        return len(self.stage_shapes)

    def stage(self, index: int, h: Tensor) -> Tensor:
        """Run up-sampling stage ``index``: (B, C_i, H_i, W) -> (B, C_{i+1}, 2 H_i, W)."""
        raise NotImplementedError

    def head(self, h: Tensor) -> Tensor:
        """Final full-resolution layers: (B, C, H_0, W) -> predicted STFT (B, 2, F, 2 W)."""
        raise NotImplementedError

    def forward(self, z: Tensor, refine: Refine | None = None) -> Tensor:
        """Decode a bottleneck map.

        Args:
            z: (B, C, H, W) bottleneck features.
            refine: optional ``refine(stage, h) -> h`` applied to the input of every stage.

        Returns:
            (B, 2, F, 2 W) predicted complex STFT.
        """
        h = z
        for index in range(self.num_stages):
            if refine is not None:
                h = refine(index, h)
            h = self.stage(index, h)
        return self.head(h)


ENCODERS: Registry = Registry("encoder", Encoder)
DECODERS: Registry = Registry("decoder", Decoder)
