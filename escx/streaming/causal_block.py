"""A causal Swin block computed once per token: a key/value cache of the open window.

In a causal window (:func:`escx.backbones.swin_layers.causal_mask`) a token attends to its own
code frame and the earlier frames of its window, so a new frame needs, besides its own tokens,
only the projections of the frames of its window that came before. :class:`CausalBlockOp` keeps
those (at most ``window - causal_block`` time patches) and runs LayerNorm, the projections, the
output projection and the MLP on the new tokens alone; attention runs over the windows the new
tokens fall in. It computes what the whole-signal block computes:

* frequency windows as in the block: rows zero-padded after the LayerNorm (a padded token's
  projection is the qkv bias), cyclically shifted in shifted blocks, with Swin's region mask on
  the last window row;
* time windows on the block's grid (starting at multiples of the window, shifted by ``shift``);
  the first frames of a shifted block form a window of their own (in the whole-signal block they
  share the wrapped last window column with the signal's end, separated by the region mask), at
  the same time columns, so they get the same position bias;
* the relative position bias plus the causal mask, as :meth:`WindowAttention.position_bias`.

A frame's block costs a few matrix products and a handful of other operations: the windows are
gathered from the new and cached projections with one precomputed index (padding tokens and the
shift's cyclic roll included) and the wanted outputs picked back with another, and the position
bias is prepared for escx's attention kernel once per stream (recomputed if the weights change).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx import kernels
from escx.backbones import fused
from escx.backbones.swin_layers import CAUSAL_MASK_VALUE, boundary_masks
from escx.streaming.ops import TimeOp
from escx.streaming.timeline import TimeBuffer


class CausalBlockOp(TimeOp):
    """One causal Swin block on channels-last tokens (B, H, W, C), time axis 2.

    Args:
        stage: the causal :class:`~escx.backbones.swin_layers.SwinStage`.
        index: the block's index in the stage.
    """

    axis = 2

    def __init__(self, stage: nn.Module, index: int) -> None:
        self.block = stage.blocks[index]
        self.window, self.shift = self.block.window, self.block.shift
        self.frame = stage.causal_block
        self.done = 0  # tokens computed
        self.pending = TimeBuffer(2)  # tokens of a frame not yet whole
        self.cache: Tensor | None = None  # qkv of the open window's earlier tokens
        self._mask_cache: Tensor | None = None  # (3, N, N) boundary masks of a shifted block
        # (bias table's storage and version, bias, kernel's bias, kernel's masks)
        self._bias_cache: tuple[tuple[int, int], Tensor, Tensor, Tensor | None] | None = None
        self._indices: dict[tuple, tuple[Tensor, Tensor]] = {}  # (b, h, n, new, device) -> ...

    def ready(self, received: int, ended: bool) -> int:
        return received if ended else received - received % self.frame

    def window_start(self, position: int) -> int:
        """Start of the time window holding ``position`` (negative for a shifted block's first
        window, which has no earlier columns)."""
        return position - (position - self.shift) % self.window

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        self.pending.append(x)
        end = self.ready(self.pending.end, ended)
        if end <= self.done:
            return None
        x = self.pending.take(self.done, end)
        self.pending.drop_before(end)
        block, attn = self.block, self.block.attn
        w = x.shape[2]
        qkv = fused.linear(block.norm1(x), attn.qkv)  # (B, H, w, 3C), new tokens only
        start = self.window_start(self.done)
        cached = 0 if self.cache is None else self.cache.shape[2]
        seq = qkv if not cached else torch.cat([self.cache, qkv], dim=2)
        out = self._attend(seq, start, self.done - cached, w)
        y = fused.linear(out, attn.proj, None, x)
        y = block.mlp(block.norm2(y), residual=y)
        self.done += w
        keep = self.done - self.window_start(self.done)
        # A view: it keeps at most one window of ``seq`` alive.
        self.cache = seq[:, :, seq.shape[2] - keep :] if keep else None
        return y

    def _attend(self, seq: Tensor, start: int, first: int, new: int) -> Tensor:
        """Window attention of the last ``new`` tokens of ``seq``.

        Args:
            seq: (B, H, n, 3C) projections of positions ``first .. first + n``.
            start: the time window grid position where ``seq``'s first window starts
                (``<= first``; earlier columns are empty and masked).
            first: position of ``seq``'s first token.
            new: tokens whose outputs are wanted (the last ``new`` of ``seq``).

        Returns:
            (B, H, new, C) attention outputs before the output projection.
        """
        lead = first - start  # empty columns before the first token
        if not lead:
            out = self._attend_native(seq, new)
            if out is not None:
                return out
        attn, ws = self.block.attn, self.window
        b, h, n, c3 = seq.shape
        heads, hd = attn.heads, c3 // 3 // attn.heads
        cols = lead + n + (-(lead + n)) % ws
        hp = h + (-h) % ws
        grid = seq.new_empty(b, hp, cols, c3, dtype=torch.float32)
        grid[:] = attn.qkv.bias.float()  # padding tokens: a zero token's projection
        grid[:, :h, lead : lead + n] = seq.float()
        if self.shift:
            grid = torch.roll(grid, -self.shift, dims=1)
        nh, nw = hp // ws, cols // ws
        bias = self._bias()[0]
        windows = grid.view(b, nh, ws, nw, ws, 3, heads, hd).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = windows.reshape(3, b, nh, nw, heads, ws * ws, hd).unbind(0)
        scores = torch.matmul(q * hd**-0.5, k.transpose(-1, -2)) + bias
        if self.shift:
            scores[:, -1] += self._masks(seq.device)[0]
        if lead:  # the empty columns of the first window are no tokens at all
            empty = torch.arange(ws * ws, device=seq.device) % ws < lead
            scores[:, :, 0] += torch.where(empty, CAUSAL_MASK_VALUE, 0.0)
        out = torch.matmul(torch.softmax(scores, dim=-1), v)  # (B, nh, nw, heads, N, hd)
        out = out.view(b, nh, nw, heads, ws, ws, hd).permute(0, 1, 4, 2, 5, 3, 6)
        out = out.reshape(b, hp, cols, heads * hd)
        if self.shift:
            out = torch.roll(out, self.shift, dims=1)
        return out[:, :h, lead + n - new : lead + n].to(seq.dtype)

    def _attend_native(self, seq: Tensor, new: int) -> Tensor | None:
        """:meth:`_attend` for a ``seq`` that starts on a time window boundary, through escx's
        window-attention kernel (Swin's row mask on the last window row only); None where the
        kernel does not run."""
        attn = self.block.attn
        b, h, n, c3 = seq.shape
        gather, pick, grid = self._window_indices(b, h, n, new, seq.device)
        # The gather's last source row is a padding token: a zero token's projection.
        rows = torch.cat([seq.reshape(b * h * n, c3).float(), attn.qkv.bias.float()[None]])
        windows = rows.index_select(0, gather).view(-1, self.window**2, c3)
        _, bias, masks = self._bias()
        out = kernels.window_attention(windows, bias, masks, grid, attn.heads, prepared=True)
        if out is None:
            return None
        out = out.view(-1, c3 // 3).index_select(0, pick)
        return out.view(b, h, new, c3 // 3).to(seq.dtype)

    def _window_indices(
        self, b: int, h: int, n: int, new: int, device: torch.device
    ) -> tuple[Tensor, Tensor, tuple[int, int, int]]:
        """Indices between ``seq`` (B, H, n) and the window grid of :meth:`_attend_native`.

        Returns:
            gather: (B * nh * nw * N,) for each window token in the kernel's order, its row of
                ``seq`` flattened to (B * H * n) rows, or ``B * H * n`` for a padding token;
            pick: (B * H * new,) for each wanted output (the last ``new`` tokens), its row of
                the kernel's output;
            the grid (B, nh, nw).
        """
        ws, shift = self.window, self.shift
        hp, cols = h + (-h) % ws, n + (-n) % ws
        nh, nw = hp // ws, cols // ws
        key = (b, h, n, new, device)
        if key not in self._indices:

            def arange(*bounds: int) -> Tensor:
                return torch.arange(*bounds, device=device)

            batch, i, j = arange(b)[:, None, None, None, None], arange(nh), arange(nw)
            r, t = arange(ws)[:, None], arange(ws)
            row = (i[:, None, None, None] * ws + r + shift) % hp  # unrolled row of a grid row
            col = j[:, None, None] * ws + t
            valid = (row < h) & (col < n)
            gather = torch.where(valid, (batch * h + row) * n + col, b * h * n).reshape(-1)
            rolled = (arange(h) - shift) % hp  # grid row of each row of ``seq``
            wanted = arange(n - new, n)
            pick = (
                ((batch[..., 0, 0] * nh + rolled[:, None] // ws) * nw + wanted // ws) * ws**2
                + rolled[:, None] % ws * ws
                + wanted % ws
            )
            self._indices[key] = (gather, pick.reshape(-1))
        return (*self._indices[key], (b, nh, nw))

    def _bias(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The position bias (heads, N, N) with the causal mask, and the same bias and the
        boundary masks prepared for escx's kernel; computed again only when the bias table
        changes."""
        table = self.block.attn.relative_position_bias_table
        version = (table.data_ptr(), table._version)
        if self._bias_cache is None or self._bias_cache[0] != version:
            bias = self.block.attn.position_bias().detach().float()
            masks = self._masks(table.device)
            prepared = None if masks is None else kernels.prepare_bias(masks)
            self._bias_cache = (version, bias, kernels.prepare_bias(bias), prepared)
        return self._bias_cache[1:]

    def _masks(self, device: torch.device) -> Tensor | None:
        """Masks of the last window row, the last window column and the corner (3, N, N), as
        :func:`~escx.backbones.swin_layers.boundary_masks` orders them, for a grid whose time
        windows are all interior: Swin's row mask on the last row (and corner) of a shifted
        block, nothing on the last column. None for an unshifted block."""
        if not self.shift:
            return None
        if self._mask_cache is None or self._mask_cache.device != device:
            row = boundary_masks(self.window, self.shift, device)[0]
            self._mask_cache = torch.stack([row, torch.zeros_like(row), row])
        return self._mask_cache


class CausalConvOp(TimeOp):
    """A convolution that reaches ``behind`` steps back in time and none ahead, on (B, C, H, W).

    Each call convolves only the new positions, from a slice starting ``behind`` steps before
    them (zeros before the stream's start, as the whole-signal padding), so every output is
    computed once.

    Args:
        conv: ``fn(x)`` with no time padding: ``W + behind`` input steps -> ``W`` outputs.
        behind: steps of the past each output reads.
        ratio: input steps per output step after ``fn`` (1; the pixel shuffle gives 2 fine
            frames per patch before the second convolution, which has its own op).
    """

    axis = 3

    def __init__(self, conv: callable, behind: int) -> None:
        self.conv, self.behind = conv, behind
        self.tail: Tensor | None = None  # the last ``behind`` inputs

    def ready(self, received: int, ended: bool) -> int:
        return received

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        if x is None or not x.shape[-1]:
            return None
        if self.tail is None:
            self.tail = x.new_zeros(*x.shape[:-1], self.behind)
        seq = torch.cat([self.tail, x], dim=-1)
        self.tail = seq[..., seq.shape[-1] - self.behind :].clone()
        return self.conv(seq)


def unfolded_conv(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``F.conv2d`` without padding, as one matrix product over unfolded patches.

    A streaming slice is a few time steps wide, where oneDNN's convolution ran at a fifth of a
    plain GEMM's speed (5 ms for the 5x5 expansion of one 20 ms frame of ESC-Base).

    Args:
        x: (B, C, H, W) input.
        weight: (O, C, kh, kw).
        bias: (O,).

    Returns:
        (B, O, H - kh + 1, W - kw + 1).
    """
    b, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    patches = F.unfold(x, (kh, kw))  # (B, C * kh * kw, L)
    y = torch.matmul(weight.reshape(o, -1), patches) + bias[:, None]
    return y.view(b, o, h - kh + 1, w - kw + 1)


def causal_deembed_ops(module: nn.Module) -> list[TimeOp]:
    """The causal de-embedding (:meth:`PatchDeEmbed.causal_convolutions`) as two
    :class:`CausalConvOp` around the pixel shuffle: (B, C, H, W) -> (B, 2, F, W * pt)."""
    from escx.streaming.ops import Pointwise

    r1, r2 = module.expand.kernel_size[0] // 2, module.out.kernel_size[0] // 2
    pt = module.patch_size[1]

    def expand(x: Tensor) -> Tensor:
        return unfolded_conv(F.pad(x, (0, 0, r1, r1)), module.expand.weight, module.expand.bias)

    def out(x: Tensor) -> Tensor:
        # Two output channels: oneDNN's convolution beats the unfolded product here (0.18 ms
        # against 0.63 ms a 20 ms frame of ESC-Base on one thread); the expansion is the reverse.
        return F.conv2d(F.pad(x, (0, 0, r2, r2)), module.out.weight, module.out.bias)

    return [
        CausalConvOp(expand, 2 * r1),
        Pointwise(module.shuffle, axis=3, group=1, out_per_group=pt),
        CausalConvOp(out, 2 * r2),
    ]
