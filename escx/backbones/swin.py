"""Swin transformer encoder and decoder of ESC (docs/esc.md §4).

The encoder runs Swin blocks at widths 45, 45, 72, 96, 144, 192 and halves frequency after each
of the last five stages (64 -> 2 rows); the decoder is *not* its mirror: it runs blocks at 384,
192, 144, 96, 72 and 45 (post_nn), so it holds most of the parameters (docs/esc.md §4).

``causal=True`` gives the causal ESC's backbones: every window attends only within a code frame
and to earlier frames (:func:`escx.backbones.swin_layers.causal_mask`), and the decoder's
de-embedding convolves only the past in time (:class:`PatchDeEmbed` with ``causal``). With the
codec's causal framing (:class:`escx.spectral.CausalSTFT`) no code frame depends on a later one.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from escx.backbones.base import DECODERS, ENCODERS, Decoder, Encoder, FeatureShape
from escx.backbones.deembed import PatchDeEmbed
from escx.backbones.patching import PatchEmbed
from escx.backbones.swin_layers import SwinStage


def _check_lengths(dims: Sequence[int], heads: Sequence[int]) -> None:
    if len(heads) != len(dims) - 1:
        raise ValueError(
            f"need one heads entry per stage: {len(dims) - 1} stages for dims {list(dims)}, "
            f"got heads {list(heads)}"
        )


@ENCODERS.register
class SwinEncoder(Encoder):
    """ESC Swin encoder: patch embed, full-resolution Swin stage, 5 Swin + patch-merge stages.

    Args:
        freq_bins: STFT bins F (192).
        patch_size: (frequency, time) patch of the embedding (3, 2).
        dims: widths, fine to coarse; dims[0] is the embedding width.
        heads: attention heads of each stage (one per merge stage; pre_nn uses heads[0]).
        depth: Swin blocks per stage (2 for ESC-Base, 4 for ESC-Large).
        window_size: attention window side.
        mlp_ratio: MLP expansion.
        causal: attend only within a code frame and to earlier frames (the causal ESC).
        frame_patches: time patches per code frame (2 in ESC), the block a causal window lets
            see each other.
    """

    def __init__(
        self,
        freq_bins: int = 192,
        patch_size: tuple[int, int] = (3, 2),
        dims: Sequence[int] = (45, 72, 96, 144, 192, 384),
        heads: Sequence[int] = (3, 6, 12, 24, 24),
        depth: int = 2,
        window_size: int = 4,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        frame_patches: int = 2,
    ) -> None:
        super().__init__()
        _check_lengths(dims, heads)
        self.freq_bins, self.time_patch = freq_bins, patch_size[1]
        self.rows = freq_bins // patch_size[0]
        self.dims = list(dims)
        self.causal = causal
        block = frame_patches if causal else 0
        self.patch_embed = PatchEmbed(2, dims[0], patch_size, norm=True)
        self.pre_nn = SwinStage(
            dims[0], dims[0], heads[0], depth, window_size, mlp_ratio, causal_block=block
        )
        self.stages = nn.ModuleList(
            SwinStage(dims[i], dims[i + 1], heads[i], depth, window_size, mlp_ratio, "down", block)
            for i in range(len(dims) - 1)
        )

    @property
    def feature_shapes(self) -> list[FeatureShape]:
        rows = [self.rows]
        for _ in self.stages:
            rows.append((rows[-1] + 1) // 2)
        return [FeatureShape(c, r) for c, r in zip(self.dims, rows, strict=True)]

    def forward(self, spec: Tensor) -> list[Tensor]:
        x = self.pre_nn(self.patch_embed(spec).permute(0, 2, 3, 1))
        feats = [x]
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return [f.permute(0, 3, 1, 2) for f in feats]


@DECODERS.register
class SwinDecoder(Decoder):
    """ESC Swin decoder: 5 Swin + patch-split stages, full-resolution Swin stage, de-embed.

    Args:
        freq_bins: STFT bins F (192).
        patch_size: (frequency, time) patch of the embedding (3, 2).
        dims: widths, coarse to fine; dims[0] is the bottleneck width.
        heads: attention heads of each split stage (post_nn uses heads[-1]).
        depth: Swin blocks per stage.
        window_size: attention window side.
        mlp_ratio: MLP expansion.
        causal: attend only within a code frame and to earlier frames, and de-embed from the
            past only (the causal ESC).
        frame_patches: time patches per code frame (2 in ESC), as in :class:`SwinEncoder`.
    """

    def __init__(
        self,
        freq_bins: int = 192,
        patch_size: tuple[int, int] = (3, 2),
        dims: Sequence[int] = (384, 192, 144, 96, 72, 45),
        heads: Sequence[int] = (24, 24, 12, 6, 3),
        depth: int = 2,
        window_size: int = 4,
        mlp_ratio: float = 4.0,
        causal: bool = False,
        frame_patches: int = 2,
    ) -> None:
        super().__init__()
        _check_lengths(dims, heads)
        self.freq_bins = freq_bins
        self.dims = list(dims)
        self.out_rows = freq_bins // patch_size[0]
        self.causal = causal
        block = frame_patches if causal else 0
        self.stages = nn.ModuleList(
            SwinStage(dims[i], dims[i + 1], heads[i], depth, window_size, mlp_ratio, "up", block)
            for i in range(len(dims) - 1)
        )
        self.post_nn = SwinStage(
            dims[-1], dims[-1], heads[-1], depth, window_size, mlp_ratio, causal_block=block
        )
        self.patch_deembed = PatchDeEmbed(dims[-1], 2, patch_size, causal=causal)

    @property
    def stage_shapes(self) -> list[FeatureShape]:
        n = len(self.stages)
        return [FeatureShape(self.dims[i], self.out_rows >> (n - i)) for i in range(n)]

    def stage(self, index: int, h: Tensor) -> Tensor:
        return self.stages[index](h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def head(self, h: Tensor) -> Tensor:
        h = self.post_nn(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.patch_deembed(h)
