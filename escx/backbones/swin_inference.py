"""Gradient-free CPU path of the Swin block: the same function as ``SwinBlock.forward``, faster.

Profiling ESC-Base on a 2-core CPU showed the straightforward block spending most of its time
outside matrix products: ``torch.roll`` (a concatenation per axis), window partition copies of
the 3C-wide projections, SDPA's masked-softmax bookkeeping, separate GELU and residual passes,
and memory traffic of 45-wide maps of 64,000 tokens. This path:

* shifts with one strided copy (:func:`rolled_copy`) and runs the whole shifted block in shifted
  coordinates (every op but attention is per token), shifting back once at the end;
* partitions the C-wide input into windows once and runs the whole block (LayerNorm, qkv,
  attention, projection + residual, LayerNorm, MLP + residual) in window order, with fused oneDNN
  linears (:mod:`escx.backbones.fused`), un-partitioning once at the end (processing chunks of
  windows to stay in cache was measured and was slower with 2 threads);
* attends with escx's native window-attention kernel (:mod:`escx.kernels`: one pass per window,
  every head, no batched 16x16 products); without it, per head on strided views of the
  projections (no head-major copy), with the relative position bias as the additive input of
  one ``baddbmm``. In shifted blocks only the last window row and column are masked
  (:func:`boundary_masks`), so only they get a mask.

Grids that are not a whole number of windows (the 2-row stage of ESC's decoder) take a simpler
route through :func:`attend_grid`, which projects only real tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from escx import kernels
from escx.backbones import fused


def _runs(n_dst: int, period: int, offset: int, valid: int) -> list[tuple[slice, slice]]:
    """(dst, src) slice pairs with ``dst[i] = src[(i + offset) % period]`` for i < n_dst,
    leaving out source indices >= ``valid`` (padding that is not stored in the source)."""
    runs, i = [], 0
    while i < n_dst:
        r = (i + offset) % period
        length = min(n_dst - i, period - r)
        if r < valid:
            take = min(length, valid - r)
            runs.append((slice(i, i + take), slice(r, r + take)))
        i += length
    return runs


def rolled_copy(dst: Tensor, src: Tensor, offset_h: int, offset_w: int) -> None:
    """``dst[:, i, j] = src[:, (i + offset_h) % P_h, (j + offset_w) % P_w]`` in one pass.

    The periods P are the larger of the two sizes along each axis: this is ``torch.roll`` (equal
    sizes), roll of a zero-padded source (``dst`` larger; padded positions are left as they
    are) or roll then crop (``dst`` smaller), without materialising the padded or rolled tensor.
    Maps are (B, H, W, ...).
    """
    ph, pw = max(dst.shape[1], src.shape[1]), max(dst.shape[2], src.shape[2])
    for dh, sh in _runs(dst.shape[1], ph, offset_h, src.shape[1]):
        for dw, sw in _runs(dst.shape[2], pw, offset_w, src.shape[2]):
            dst[:, dh, dw] = src[:, sh, sw]


def _attend(
    attn: nn.Module, qkv: Tensor, masks: Tensor | None, grid: tuple[int, int, int]
) -> Tensor:
    """Multi-head attention inside windows, in fp32: the native kernel
    (:func:`escx.kernels.window_attention`) where it runs, else one head at a time in PyTorch.

    Args:
        attn: the block's ``WindowAttention`` (heads, relative position bias).
        qkv: (B * nh * nw, N, 3C) projections of the windows of a (B, nh, nw) window grid.
        masks: :func:`boundary_masks` (3, N, N) of a shifted grid, or None. Only the last window
            row and column are masked, so only they get the mask (no per-window mask tensor).
        grid: (B, nh, nw).

    Returns:
        (B * nh * nw, N, C) attention output before the output projection, in ``qkv``'s dtype.
    """
    windows, n, c3 = qkv.shape
    heads = attn.heads
    hd = c3 // (3 * heads)
    bias = attn.position_bias().float()  # with a causal window's mask
    native = kernels.window_attention(qkv, bias, masks, grid, heads)
    if native is not None:
        return native
    # (3, heads, windows, N, hd) strided views of the projections: a head-major copy costs more
    # than it saves in fp32. bf16 projections are converted to fp32 in this one pass (strides
    # kept): this CPU's bf16 batched products copy strided inputs head by head, and its bf16
    # softmax is 3x slower than fp32's.
    parts = qkv.view(windows, n, 3, heads, hd).permute(2, 3, 0, 1, 4).to(torch.float32)
    out = parts.new_empty(heads, windows, n, hd)
    with torch.autocast("cpu", enabled=False):
        _attend_heads(parts, bias, masks, grid, out)
    return out.permute(1, 2, 0, 3).reshape(windows, n, heads * hd).to(qkv.dtype)


def _attend_heads(
    parts: Tensor, bias: Tensor, masks: Tensor | None, grid: tuple[int, int, int], out: Tensor
) -> None:
    """fp32 attention of each head into ``out`` (heads, windows, N, hd); ``parts`` are the
    (3, heads, windows, N, hd) projections, ``bias`` the (heads, N, N) position bias."""
    n, hd = parts.shape[-2:]
    for head in range(parts.shape[1]):
        q, k, v = parts[0, head], parts[1, head], parts[2, head]
        scores = torch.baddbmm(bias[head], q, k.transpose(1, 2), alpha=hd**-0.5)
        if masks is not None:
            by_window = scores.view(*grid, n, n)
            by_window[:, -1, :-1].add_(masks[0])
            by_window[:, :-1, -1].add_(masks[1])
            by_window[:, -1, -1].add_(masks[2])
        torch.bmm(torch.softmax(scores, dim=-1), v, out=out[head])


def block_inference(block: nn.Module, x: Tensor, masks: Tensor | None) -> Tensor:
    """``SwinBlock.forward`` without autograd.

    Args:
        block: the ``SwinBlock``.
        x: (B, H, W, C) tokens.
        masks: :func:`boundary_masks` of the stage (used by shifted blocks).

    Returns:
        (B, H, W, C).
    """
    b, h, w, c = x.shape
    ws, shift = block.window, block.shift
    if h % ws or w % ws:
        y = attend_grid(block.attn, block.norm1(x), shift, masks if shift else None)
        x = fused.linear(y, block.attn.proj, None, x)
        return block.mlp(block.norm2(x), residual=x)
    nh, nw, n = h // ws, w // ws, ws * ws
    if shift:
        shifted = x.new_empty(x.shape)
        rolled_copy(shifted, x, shift, shift)
        x = shifted
    windows = x.view(b, nh, ws, nw, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, c)
    qkv = fused.linear(block.norm1(windows), block.attn.qkv)
    attended = _attend(block.attn, qkv, masks if shift else None, (b, nh, nw))
    windows = fused.linear(attended, block.attn.proj, None, windows)
    out = block.mlp(block.norm2(windows), residual=windows)
    out = out.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    if shift:
        back = out.new_empty(out.shape)
        rolled_copy(back, out, -shift, -shift)
        out = back
    return out


def attend_grid(attn: nn.Module, y: Tensor, shift: int, masks: Tensor | None) -> Tensor:
    """Window attention over a normalised grid of any size, before the output projection.

    The straightforward path zero-pads the grid to whole windows after the LayerNorm; a zero
    token's projection is exactly the qkv bias. So only real tokens are projected, and the
    padded, shifted grid of projections is filled with the bias (at ESC's 2-row decoder stage
    half of the grid is padding). No output projection runs on padded positions either.

    Args:
        attn: the block's ``WindowAttention``.
        y: (B, H, W, C) tokens after the first LayerNorm.
        shift: cyclic shift (0 for plain windows).
        masks: :func:`boundary_masks` for shifted blocks, else None.

    Returns:
        (B, H, W, C) in token order.
    """
    b, h, w, c = y.shape
    ws = attn.window
    hp, wp = h + (-h) % ws, w + (-w) % ws
    nh, nw, n = hp // ws, wp // ws, ws * ws
    qkv = fused.linear(y, attn.qkv)
    grid = qkv.new_empty(b, hp, wp, 3 * c)
    grid[:] = attn.qkv.bias.to(qkv.dtype)
    rolled_copy(grid, qkv, shift, shift)
    windows = grid.view(b, nh, ws, nw, ws, 3 * c).permute(0, 1, 3, 2, 4, 5).reshape(-1, n, 3 * c)
    out = _attend(attn, windows, masks, (b, nh, nw))
    out = out.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    cropped = out.new_empty(b, h, w, c)
    rolled_copy(cropped, out, -shift, -shift)
    return cropped
