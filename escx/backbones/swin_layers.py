"""Swin transformer blocks over (frequency, time) patch grids (docs/esc.md §5).

Swin-v1 style: pre-norm blocks, 4x4 windows, cyclic shift by 2 on odd blocks with the standard
3x3 region mask (-100 on masked logits), a learned relative position bias, MLP ratio 4, no
dropout. Attention goes through ``scaled_dot_product_attention`` with the bias and mask as one
additive mask. Maps are channels-last (B, H, W, C); grids are zero-padded at the bottom/right to a
multiple of the window after the first LayerNorm, as in Swin v1 (pad tokens are not masked in
unshifted windows).

A causal stage (``causal_block`` > 0, the causal ESC) adds one more additive mask to every window:
a token sees the tokens of its own block of ``causal_block`` time patches (one code frame) and of
earlier blocks, never later ones. Window and shift are multiples of the block, so every window
starts on a block boundary and no token sees a later code frame through any window. Only the
attention is restricted: LayerNorm normalises each token over channels, never across time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.backbones import fused
from escx.backbones.norm import LayerNorm
from escx.backbones.patching import PatchMerge, PatchSplit
from escx.backbones.swin_inference import block_inference
from escx.perf import wants_fast_cpu_path, wants_fast_cpu_training


def relative_position_index(window: int) -> Tensor:
    """(window^2, window^2) index into the (2 window - 1)^2 bias table, Swin's standard layout."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    coords = coords.flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def shift_mask(
    padded_h: int, padded_w: int, window: int, shift: int, device: torch.device
) -> Tensor:
    """Additive mask (num_windows, window^2, window^2): 0 inside a region, -100 across regions."""
    labels = torch.zeros(padded_h, padded_w, device=device)
    count = 0
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    for h0, h1 in bounds:
        for w0, w1 in bounds:
            labels[slice(h0, h1), slice(w0, w1)] = count
            count += 1
    windows = labels.view(padded_h // window, window, padded_w // window, window)
    windows = windows.permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def boundary_masks(window: int, shift: int, device: torch.device) -> Tensor:
    """The three distinct shift masks (3, window^2, window^2): last window row, last window
    column, corner. Every other window of a shifted grid lies in one region and is unmasked, so
    these three patterns describe the mask of a grid of any size."""
    full = shift_mask(
        2 * window, 2 * window, window, shift, device
    )  # windows (0,0),(0,1),(1,0),(1,1)
    return torch.stack([full[2], full[1], full[3]])


# Logit added where a causal window hides a later block: exp() of it is exactly 0 in fp32 and
# bf16 (the shift mask's -100 is not, and need not be: it only separates regions of one grid).
CAUSAL_MASK_VALUE = -1.0e4


def causal_mask(window: int, block: int) -> Tensor:
    """Additive (window^2, window^2) mask of a causal window: 0 where the key's block of ``block``
    time patches is the query's or earlier, ``CAUSAL_MASK_VALUE`` where it is later.

    Tokens are numbered row-major in (frequency, time), as the windows are partitioned."""
    block_of = (torch.arange(window * window) % window) // block  # time column -> block
    later = block_of[None, :] > block_of[:, None]  # [query, key]
    return torch.where(later, CAUSAL_MASK_VALUE, 0.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a relative position bias.

    Args:
        dim: width.
        heads: attention heads.
        window: window side.
        causal_block: 0 (every token of a window sees every other), or the time patches of one
            block that see each other and earlier blocks only (:func:`causal_mask`).
    """

    def __init__(self, dim: int, heads: int, window: int, causal_block: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(
                f"width {dim} is not divisible by {heads} heads; change the heads list"
            )
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.causal_block = causal_block
        mask = causal_mask(window, causal_block) if causal_block else None
        # Not persistent: a function of the configuration, so causal and offline ESC share one
        # state-dict layout (and parameter count).
        self.register_buffer("time_mask", mask, persistent=False)

    def position_bias(self) -> Tensor:
        """(heads, N, N) relative position bias, plus the causal mask of a causal window."""
        n = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1)
        return bias if self.time_mask is None else bias + self.time_mask

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """(B, num_windows, N, C) -> same shape; ``mask`` is (num_windows, N, N) or None."""
        b, nw, n, c = x.shape
        qkv = fused.linear(x, self.qkv).view(b, nw, n, 3, self.heads, c // self.heads)
        bias = self.position_bias()  # (heads, N, N)
        attn_mask = bias if mask is None else bias + mask[:, None]
        if wants_fast_cpu_training(x):
            out = _explicit_attention(qkv, attn_mask.to(x.dtype))
        else:
            qkv = qkv.permute(3, 0, 1, 4, 2, 5)
            out = F.scaled_dot_product_attention(
                qkv[0], qkv[1], qkv[2], attn_mask=attn_mask.to(x.dtype)
            )
        return fused.linear(out.transpose(2, 3).reshape(b, nw, n, c), self.proj)


def _explicit_attention(qkv: Tensor, attn_mask: Tensor) -> Tensor:
    """Softmax attention spelled out, for CPU training.

    ``scaled_dot_product_attention`` with a float mask takes its reference ("math") route when
    a gradient is needed, which re-checks every row for a fully masked one (``_safe_softmax``):
    10 % of ESC-Base's attention time for rows that cannot occur here (each token sees itself).

    Args:
        qkv: (B, nW, N, 3, heads, head_dim) projections.
        attn_mask: (heads, N, N) or (nW, heads, N, N) additive bias and shift mask.

    Returns:
        (B, nW, heads, N, head_dim).
    """
    q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)
    scores = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)) + attn_mask
    return torch.matmul(torch.softmax(scores, dim=-1), v)


class FeedForward(nn.Module):
    """Linear(d, ratio d) -> GELU -> Linear(ratio d, d)."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(dim, int(dim * ratio))
        self.linear_2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """(..., d) -> (..., d), plus ``residual`` if given (fused on the CPU inference path)."""
        return fused.linear(fused.linear(x, self.linear_1, "gelu"), self.linear_2, None, residual)


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention block: x + WMSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int,
        shift: int,
        mlp_ratio: float,
        causal_block: int = 0,
    ) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, causal_block)
        self.norm2 = LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_ratio)

    def forward_inference(self, x: Tensor, masks: Tensor | None) -> Tensor:
        """Gradient-free CPU path, same function as :meth:`forward`
        (:func:`escx.backbones.swin_inference.block_inference`)."""
        return block_inference(self, x, masks)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C); ``mask`` is the shift mask for the padded grid."""
        b, h, w, c = x.shape
        ws = self.window
        y = self.norm1(x)
        pad_h, pad_w = (-h) % ws, (-w) % ws
        if pad_h or pad_w:
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = y.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        y = self.attn(y.reshape(b, -1, ws * ws, c), mask if self.shift else None)
        y = y.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        if pad_h or pad_w:
            y = y[:, :h, :w]
        x = x + y
        return self.mlp(self.norm2(x), residual=x)


class SwinStage(nn.Module):
    """``depth`` Swin blocks at the input width, then an optional patch merge or split.

    Blocks alternate plain and shifted windows (shift = window // 2 on odd blocks).

    Args:
        dim: width of the blocks.
        out_dim: width after the scaling layer.
        heads: attention heads.
        depth: number of blocks.
        window: window side (4 in ESC).
        mlp_ratio: MLP expansion (4 in ESC).
        scale: "down" (PatchMerge, halves frequency), "up" (PatchSplit, doubles it) or None.
        causal_block: 0, or the time patches of one code frame: tokens then see only their own
            and earlier frames inside each window (:func:`causal_mask`).
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        heads: int,
        depth: int,
        window: int = 4,
        mlp_ratio: float = 4.0,
        scale: str | None = None,
        causal_block: int = 0,
    ) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2
        if causal_block < 0 or (
            causal_block and (window % causal_block or self.shift % causal_block)
        ):
            raise ValueError(
                f"causal_block {causal_block} must divide the window ({window}) and its shift "
                f"({self.shift}), so that windows start on frame boundaries"
            )
        self.causal_block = causal_block
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, causal_block)
            for i in range(depth)
        )
        scalers = {"down": PatchMerge, "up": PatchSplit}
        if scale is not None and scale not in scalers:
            raise ValueError(f"scale must be 'down', 'up' or None, got {scale!r}")
        if scale is None and out_dim != dim:
            raise ValueError(f"a stage without scaling keeps its width: {dim} != {out_dim}")
        self.scale = scalers[scale](dim, out_dim) if scale else None
        self._masks: dict[tuple, Tensor] = {}
        self._boundary: dict[tuple, Tensor] = {}

    def _mask(self, h: int, w: int, device: torch.device) -> Tensor | None:
        if len(self.blocks) < 2:
            return None
        ws = self.window
        key = (h + (-h) % ws, w + (-w) % ws, device)
        if key not in self._masks:
            self._masks.clear()  # grids change with input length; keep only the latest
            self._masks[key] = shift_mask(key[0], key[1], ws, self.shift, device)
        return self._masks[key]

    def _boundary_masks(self, device: torch.device) -> Tensor:
        if device not in self._boundary:
            self._boundary[device] = boundary_masks(self.window, self.shift, device)
        return self._boundary[device]

    def block_forward(self, index: int, x: Tensor) -> Tensor:
        """Block ``index`` alone, on any time slice: (B, H, W, C) -> (B, H, W, C).

        The streaming coder (:mod:`escx.streaming`) runs the blocks one at a time on slices of
        the time axis; this gives each the masks :meth:`forward` would.
        """
        block = self.blocks[index]
        if wants_fast_cpu_path(x):
            return block.forward_inference(x, self._boundary_masks(x.device))
        return block(x, self._mask(x.shape[1], x.shape[2], x.device))

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H', W, C_out)."""
        if wants_fast_cpu_path(x):
            masks = self._boundary_masks(x.device)
            for block in self.blocks:
                x = block.forward_inference(x, masks)
            return self.scale(x) if self.scale is not None else x
        mask = self._mask(x.shape[1], x.shape[2], x.device)
        for block in self.blocks:
            x = block(x, mask)
        return self.scale(x) if self.scale is not None else x
