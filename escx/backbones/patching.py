"""Patch embedding and frequency-only patch merge/split layers (docs/esc.md §3, §6).

Token maps inside the Swin backbone are channels-last (B, H, W, C): H frequency patches, W time
patches. Channel orderings of the (un)shuffles follow the reference implementation exactly so
that converted reference checkpoints give identical outputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from escx.backbones import fused
from escx.backbones.norm import LayerNorm


class PatchEmbed(nn.Module):
    """Linear patchify: Conv2d(2 -> dim, kernel = stride = patch) on the complex STFT.

    Args:
        in_channels: 2 (real, imaginary).
        dim: embedding width (45 in ESC).
        patch_size: (frequency, time) patch, (3, 2) in ESC.
        norm: apply a LayerNorm over channels (the Swin backbone does, the conv backbone does
            not). The LayerNorm exists either way: the reference builds it for the conv backbone
            too and never uses it, and its 90 parameters are part of the published counts.
    """

    def __init__(
        self,
        in_channels: int = 2,
        dim: int = 45,
        patch_size: tuple[int, int] = (3, 2),
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, tuple(patch_size), tuple(patch_size))
        self.norm = LayerNorm(dim)
        self.apply_norm = norm

    def forward(self, spec: Tensor) -> Tensor:
        """(B, 2, F, T) -> (B, dim, F // pf, T // pt); an incomplete last patch is dropped."""
        x = self.proj(spec)
        if self.apply_norm:
            x = self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x


class PatchMerge(nn.Module):
    """Halve frequency: concatenate rows 2h and 2h+1 (row 2h first) -> LayerNorm -> Linear.

    (B, H, W, C) -> (B, ceil(H / 2), W, C_out); an odd H is zero-padded first.
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(2 * dim)
        self.proj = nn.Linear(2 * dim, out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        if h % 2:
            x = nn.functional.pad(x, (0, 0, 0, 0, 0, 1))
            h += 1
        x = x.reshape(b, h // 2, 2, w, c).permute(0, 1, 3, 2, 4).reshape(b, h // 2, w, 2 * c)
        return fused.linear(self.norm(x), self.proj)


class PatchSplit(nn.Module):
    """Double frequency: LayerNorm -> Linear(C, 2 C_out) -> channel chunk k becomes row 2h+k.

    (B, H, W, C) -> (B, 2 H, W, C_out).
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.proj = nn.Linear(dim, 2 * out_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        x = fused.linear(self.norm(x), self.proj).reshape(b, h, w, 2, -1)
        return x.permute(0, 1, 3, 2, 4).reshape(b, 2 * h, w, -1)
