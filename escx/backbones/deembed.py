"""De-patchify (docs/esc.md §3), computed as one composed convolution.

The reference de-embedding is Conv(C -> C*pf*pt, 5x5) -> pixel shuffle by (pf, pt) ->
Conv(C -> 2, 3x3), with no activation between them. Two linear maps compose into one: every
output value at fine position (pf*i + a, pt*j + e) is a linear function of a 7x7 neighbourhood
of the coarse input (for pf = 3, pt = 2). Written as a convolution C -> pf*pt*2 channels with a
7x7 kernel, followed by the same pixel shuffle, it costs 2*C*49*12 instead of
2*C*25*270 + 6*2*C*9*2 multiply-adds per coarse position: 11.7x less work for ESC, and the
largest single saving over the straightforward path (the de-embedding was about 40 % of ESC's
decode FLOPs, docs/esc.md §12.1). It computes the same function, with float rounding of its own.

The composition is exact in the interior. At the four borders the straightforward path
zero-pads the *fine* intermediate map, whereas the composed kernel sees the first convolution's
value there (its bias and nearby inputs). Those few border lines (``r2 = 1`` per side) are
recomputed exactly from thin slabs of the input (:meth:`PatchDeEmbed._border_lines`), about 3 %
extra work.

Both training and inference use the composition (the kernel is rebuilt from the two weights on
every training forward, so gradients reach both); :func:`escx.perf.straightforward` restores
the two convolutions. Grids thinner than a border slab (fewer than 3 coarse rows or time
patches for ESC, i.e. one 20 ms code frame) take the straightforward path.

The causal ESC's de-embedding (``causal=True``) has the same two convolutions, zero-padded in time
on the past side only, so an output frame depends on its own and earlier patches (5 patches back
for ESC's 5x5 and 3x3 kernels); it runs the two convolutions as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.perf import fast_paths_enabled


def _offset_range(patch: int, radius: int) -> tuple[int, int]:
    """Coarse offsets (lowest, highest) that fine positions within ``radius`` of a patch reach."""
    return (-radius) // patch, (patch - 1 + radius) // patch


class PatchDeEmbed(nn.Module):
    """De-patchify: Conv5x5 -> pixel shuffle by the patch size -> Conv3x3 to 2 channels.

    The paper's figure calls it linear, but the reference is two convolutions around a pixel
    shuffle, with no output activation (docs/esc.md §3). The parameters are those two convolutions
    (``expand``, ``out``); the forward pass composes them (module docstring).
    """

    def __init__(
        self,
        dim: int = 45,
        out_channels: int = 2,
        patch_size: tuple[int, int] = (3, 2),
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.causal = causal
        pf, pt = self.patch_size
        self.expand = nn.Conv2d(dim, dim * pf * pt, kernel_size=5, padding=2)
        self.out = nn.Conv2d(dim, out_channels, kernel_size=3, padding=1)
        self._cache: tuple[tuple, Tensor, Tensor] | None = None

    def shuffle(self, y: Tensor) -> Tensor:
        """(B, pf*pt*C, H, W) -> (B, C, H*pf, W*pt); channel chunk k = (kf, kt) -> sub-position."""
        pf, pt = self.patch_size
        b, _, h, w = y.shape
        y = y.permute(0, 2, 3, 1).reshape(b, h, w, pf, pt, -1)
        return y.permute(0, 5, 1, 3, 2, 4).reshape(b, -1, h * pf, w * pt)

    def straightforward(self, x: Tensor) -> Tensor:
        """The reference's two convolutions: (B, dim, H, W) -> (B, 2, H * pf, W * pt)."""
        return self.out(self.shuffle(self.expand(x)))

    def causal_convolutions(self, x: Tensor) -> Tensor:
        """The two convolutions with time padding on the past side only (``causal``):
        (B, dim, H, W) -> (B, 2, H * pf, W * pt)."""
        r1, r2 = self._radii
        y = F.conv2d(F.pad(x, (2 * r1, 0, r1, r1)), self.expand.weight, self.expand.bias)
        y = self.shuffle(y)
        return F.conv2d(F.pad(y, (2 * r2, 0, r2, r2)), self.out.weight, self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(B, dim, H, W) -> (B, 2, H * pf, W * pt) predicted complex STFT."""
        if self.causal:
            return self.causal_convolutions(x)
        if not fast_paths_enabled() or any(x.shape[axis] < self._slab(axis) for axis in (2, 3)):
            return self.straightforward(x)
        return self.composed(x)

    @property
    def _radii(self) -> tuple[int, int]:
        """Half-widths of the first (5x5) and second (3x3) kernels."""
        return self.expand.kernel_size[0] // 2, self.out.kernel_size[0] // 2

    def _slab(self, axis: int) -> int:
        """Input lines along ``axis`` (2: frequency, 3: time) behind one side's border lines."""
        r1, r2 = self._radii
        return (2 * r2 - 1) // self.patch_size[axis - 2] + 1 + r1

    # ---- the composition ------------------------------------------------------------------

    def composed_kernel(self) -> tuple[Tensor, Tensor]:
        """Kernel (pf*pt*out, dim, kh, kw) and bias (pf*pt*out,) of the composed convolution.

        Output channel (a*pt + e)*out + o is output channel o at fine sub-position (a, e).
        """
        w1, b1, w2, b2 = self.expand.weight, self.expand.bias, self.out.weight, self.out.bias
        if not torch.is_grad_enabled():  # inference: rebuild only when a weight changed
            key = tuple((p.data_ptr(), p._version, p.dtype) for p in (w1, b1, w2, b2))
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1], self._cache[2]
        pf, pt = self.patch_size
        n_out, dim, k2, _ = w2.shape
        k1, r2 = w1.shape[-1], k2 // 2
        (lo_f, hi_f), (lo_t, hi_t) = _offset_range(pf, r2), _offset_range(pt, r2)
        # Blocks of the expand weight by fine sub-position (a', e'): (pf, pt, dim, dim_in, k, k).
        w1 = w1.view(pf, pt, dim, -1, k1, k1)
        b1 = b1.view(pf, pt, dim)
        rows = []
        for a in range(pf):
            for e in range(pt):
                kernel = w2.new_zeros(n_out, w1.shape[3], hi_f - lo_f + k1, hi_t - lo_t + k1)
                bias = b2
                for u in range(-r2, r2 + 1):
                    for v in range(-r2, r2 + 1):
                        di, a_src = divmod(a + u, pf)
                        dj, e_src = divmod(e + v, pt)
                        tap = w2[:, :, u + r2, v + r2]  # (out, dim)
                        block = torch.einsum("oc,cdpq->odpq", tap, w1[a_src, e_src])
                        kernel = kernel + F.pad(
                            block,
                            (dj - lo_t, hi_t - dj, di - lo_f, hi_f - di),
                        )
                        bias = bias + tap @ b1[a_src, e_src]
                rows.append((kernel, bias))
        kernel = torch.cat([k for k, _ in rows])
        bias = torch.cat([b for _, b in rows])
        if not torch.is_grad_enabled():
            self._cache = (key, kernel, bias)
        return kernel, bias

    def composed(self, x: Tensor) -> Tensor:
        """The composed convolution with exact borders; same function as :meth:`straightforward`."""
        pf, pt = self.patch_size
        r1, r2 = self._radii
        (lo_f, hi_f), (lo_t, hi_t) = _offset_range(pf, r2), _offset_range(pt, r2)
        kernel, bias = self.composed_kernel()
        b, _, h, w = x.shape
        padded = F.pad(x, (r1 - lo_t, r1 + hi_t, r1 - lo_f, r1 + hi_f))
        y = F.conv2d(padded, kernel.to(x.dtype), bias.to(x.dtype))  # (B, pf*pt*out, H, W)
        n_out = kernel.shape[0] // (pf * pt)
        y = y.view(b, pf, pt, n_out, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, n_out, h * pf, -1)
        for axis in (2, 3):
            for end in (False, True):
                lines = self._border_lines(x, axis, end)
                y.narrow(axis, y.shape[axis] - r2 if end else 0, r2).copy_(lines)
        return y

    def _border_lines(self, x: Tensor, axis: int, end: bool) -> Tensor:
        """The straightforward output's first (or last) ``r2`` lines along ``axis`` (2: frequency,
        3: time), from the thinnest input slab that determines them.

        The slab is zero-padded on the outer side (a true border) and on both sides of the other
        axis, so corners are exact too.
        """
        r1, r2 = self._radii
        take = self._slab(axis)
        slab = x.narrow(axis, x.shape[axis] - take if end else 0, take)

        def pad(tensor: Tensor, radius: int) -> Tensor:
            outer = (0, radius) if end else (radius, 0)
            pads = (*outer, radius, radius) if axis == 3 else (radius, radius, *outer)
            return F.pad(tensor, pads)

        fine = self.shuffle(F.conv2d(pad(slab, r1), self.expand.weight, self.expand.bias))
        fine = fine.narrow(axis, fine.shape[axis] - 2 * r2 if end else 0, 2 * r2)
        return F.conv2d(pad(fine, r2), self.out.weight, self.out.bias)
