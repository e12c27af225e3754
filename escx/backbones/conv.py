"""Convolutional backbone of the ESC ablations (docs/esc.md §9.2).

Every convolution has a (5, 2) kernel with padding (2, 1) and is cropped to the first W outputs,
so each output frame sees time patches t-1 and t. Encoder stages end in a stride-(2, 1) conv that
halves frequency; decoder stages in a transposed conv that doubles it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from escx.backbones.base import DECODERS, ENCODERS, Decoder, Encoder, FeatureShape
from escx.backbones.deembed import PatchDeEmbed
from escx.backbones.patching import PatchEmbed


class CroppedConv(nn.Module):
    """Conv2d (or ConvTranspose2d) cropped to the expected (H', W) output grid."""

    def __init__(
        self, in_dim: int, out_dim: int, kernel: tuple[int, int], scale: str | None = None
    ) -> None:
        super().__init__()
        self.scale = scale
        if scale == "up":
            self.conv = nn.ConvTranspose2d(in_dim, out_dim, kernel, (2, 1), padding=(1, 0))
        else:
            stride = (2, 1) if scale == "down" else (1, 1)
            self.conv = nn.Conv2d(in_dim, out_dim, kernel, stride, padding=(2, 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        rows = {"up": 2 * h, "down": h // 2, None: h}[self.scale]
        return self.conv(x)[..., :rows, :w]


class ResidualUnit(nn.Module):
    """x + [conv -> BN -> PReLU -> conv -> BN -> PReLU](x)."""

    def __init__(self, dim: int, kernel: tuple[int, int]) -> None:
        super().__init__()
        self.block = nn.Sequential(
            CroppedConv(dim, dim, kernel),
            nn.BatchNorm2d(dim),
            nn.PReLU(),
            CroppedConv(dim, dim, kernel),
            nn.BatchNorm2d(dim),
            nn.PReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ConvStage(nn.Module):
    """``depth`` residual units, then a scaling conv -> BN -> PReLU."""

    def __init__(
        self, in_dim: int, out_dim: int, depth: int, kernel: tuple[int, int], scale: str
    ) -> None:
        super().__init__()
        self.units = nn.Sequential(*(ResidualUnit(in_dim, kernel) for _ in range(depth)))
        self.scale = nn.Sequential(
            CroppedConv(in_dim, out_dim, kernel, scale), nn.BatchNorm2d(out_dim), nn.PReLU()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.scale(self.units(x))


@ENCODERS.register
class ConvEncoder(Encoder):
    """Convolutional encoder of the ESC ablations: patch embed (no norm), conv, 5 down stages.

    Args:
        freq_bins: STFT bins F (192).
        patch_size: (frequency, time) patch of the embedding.
        dims: widths, fine to coarse.
        kernel_size: conv kernel (frequency, time).
        residual_units: residual units per stage (``conv_depth`` in the reference).
    """

    def __init__(
        self,
        freq_bins: int = 192,
        patch_size: tuple[int, int] = (3, 2),
        dims: Sequence[int] = (45, 72, 96, 144, 192, 384),
        kernel_size: tuple[int, int] = (5, 2),
        residual_units: int = 1,
    ) -> None:
        super().__init__()
        self.freq_bins, self.time_patch = freq_bins, patch_size[1]
        self.rows = freq_bins // patch_size[0]
        self.dims = list(dims)
        kernel = tuple(kernel_size)
        self.patch_embed = PatchEmbed(2, dims[0], patch_size, norm=False)
        self.pre_nn = CroppedConv(dims[0], dims[0], kernel)
        self.stages = nn.ModuleList(
            ConvStage(dims[i], dims[i + 1], residual_units, kernel, "down")
            for i in range(len(dims) - 1)
        )

    @property
    def feature_shapes(self) -> list[FeatureShape]:
        return [FeatureShape(c, self.rows >> i) for i, c in enumerate(self.dims)]

    def forward(self, spec: Tensor) -> list[Tensor]:
        x = self.pre_nn(self.patch_embed(spec))
        feats = [x]
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


@DECODERS.register
class ConvDecoder(Decoder):
    """Convolutional decoder of the ESC ablations: 5 transposed-conv up stages, conv, de-embed.

    Args:
        freq_bins: STFT bins F (192).
        patch_size: (frequency, time) patch of the embedding.
        dims: widths, coarse to fine.
        kernel_size: conv kernel (frequency, time).
        residual_units: residual units per stage (``conv_depth`` in the reference).
    """

    def __init__(
        self,
        freq_bins: int = 192,
        patch_size: tuple[int, int] = (3, 2),
        dims: Sequence[int] = (384, 192, 144, 96, 72, 45),
        kernel_size: tuple[int, int] = (5, 2),
        residual_units: int = 1,
    ) -> None:
        super().__init__()
        self.freq_bins = freq_bins
        self.dims = list(dims)
        self.out_rows = freq_bins // patch_size[0]
        kernel = tuple(kernel_size)
        self.stages = nn.ModuleList(
            ConvStage(dims[i], dims[i + 1], residual_units, kernel, "up")
            for i in range(len(dims) - 1)
        )
        self.post_nn = CroppedConv(dims[-1], dims[-1], kernel)
        self.patch_deembed = PatchDeEmbed(dims[-1], 2, patch_size)

    @property
    def stage_shapes(self) -> list[FeatureShape]:
        n = len(self.stages)
        return [FeatureShape(self.dims[i], self.out_rows >> (n - i)) for i in range(n)]

    def stage(self, index: int, h: Tensor) -> Tensor:
        return self.stages[index](h)

    def head(self, h: Tensor) -> Tensor:
        return self.patch_deembed(self.post_nn(h))
