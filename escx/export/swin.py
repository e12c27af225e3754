"""ESC's Swin backbone run on a time grid padded to whole attention windows, with a column mask.

escx's Swin block zero-pads its token grid to whole 4x4 windows after the first LayerNorm and
trims it again, so whether it pads depends on the input length (an odd number of code frames
gives a time grid of 2 mod 4 patches). A graph with a symbolic length cannot branch on that. The
exported graphs therefore always run on a grid of ``4 n`` time patches (``n`` windows) and carry
a (W,) 0/1 mask of the real patches: each block multiplies its normalised input by the mask,
which gives the padded columns exactly the zeros escx pads with, and every other layer works per
column, so the real columns compute what escx computes. The padded columns hold values nobody
reads; the only layers that mix neighbouring columns besides attention, the de-embedding's two
convolutions, see them zeroed first (:func:`deembed`).

These functions call the modules' own layers (``norm1``, ``attn``, ``mlp``, ...); only the
padding and the shift mask are written here, for a grid whose time size is a whole number of
windows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from escx.backbones.base import Decoder
from escx.backbones.deembed import PatchDeEmbed
from escx.backbones.swin import SwinDecoder, SwinEncoder
from escx.backbones.swin_layers import SwinBlock, SwinStage, WindowAttention, _explicit_attention


def _regions(size: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Swin's three shift regions along one axis of a padded grid: 0, 1 (last window before the
    shift) and 2 (the last ``shift`` positions)."""
    index = torch.arange(size, device=device)
    return (index >= size - window).long() + (index >= size - shift).long()


def shift_mask(rows: int, cols: int, window: int, shift: int, device: torch.device) -> Tensor:
    """Additive mask (windows, window^2, window^2) of a shifted (rows, cols) grid: 0 inside a
    region, -100 across; the same values as :func:`escx.backbones.swin_layers.shift_mask`."""
    labels = _regions(rows, window, shift, device)[:, None] * 3
    labels = labels + _regions(cols, window, shift, device)[None, :]
    windows = labels.view(rows // window, window, cols // window, window)
    windows = windows.permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def _roll(y: Tensor, shift: int) -> Tensor:
    """``torch.roll(y, (shift, shift), dims=(1, 2))`` as slices and concatenations.

    ``torch.roll`` of a symbolic size branches on whether the shift is a multiple of the size;
    the slices say the same thing without asking (the grid is at least one window wide).
    """
    for dim in (1, 2):
        cut = y.shape[dim] - shift if shift > 0 else -shift
        y = torch.cat([y.narrow(dim, cut, y.shape[dim] - cut), y.narrow(dim, 0, cut)], dim=dim)
    return y


def attention(module: WindowAttention, x: Tensor, mask: Tensor | None) -> Tensor:
    """``WindowAttention.forward`` with the softmax spelled out (escx's training form).

    ONNX's exporter translates ``scaled_dot_product_attention`` for 4-D inputs only; window
    attention is 5-D (batch, windows, heads, tokens, channels).
    """
    b, nw, n, c = x.shape
    qkv = module.qkv(x).view(b, nw, n, 3, module.heads, c // module.heads)
    bias = module.relative_position_bias_table[module.relative_position_index.view(-1)]
    bias = bias.view(n, n, module.heads).permute(2, 0, 1)  # (heads, N, N)
    attn_mask = bias if mask is None else bias + mask[:, None]
    out = _explicit_attention(qkv, attn_mask.to(x.dtype))
    return module.proj(out.transpose(2, 3).reshape(b, nw, n, c))


def block(module: SwinBlock, x: Tensor, valid: Tensor, mask: Tensor | None) -> Tensor:
    """``SwinBlock.forward`` on a grid whose time size is a whole number of windows.

    Args:
        module: the block.
        x: (B, H, W, C) tokens, W a multiple of the window.
        valid: (W,) 0/1 float mask of real columns.
        mask: the shift mask of the padded grid (used by shifted blocks).

    Returns:
        (B, H, W, C).
    """
    b, h, w, c = x.shape
    ws = module.window
    y = module.norm1(x) * valid[None, None, :, None]  # escx pads normalised tokens with zeros
    pad_h = (-h) % ws  # frequency rows are static: a plain branch
    if pad_h:
        y = F.pad(y, (0, 0, 0, 0, 0, pad_h))
    hp = h + pad_h
    if module.shift:
        y = _roll(y, -module.shift)
    y = y.view(b, hp // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    y = attention(module.attn, y.reshape(b, -1, ws * ws, c), mask if module.shift else None)
    y = y.view(b, hp // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, w, c)
    if module.shift:
        y = _roll(y, module.shift)
    if pad_h:
        y = y[:, :h]
    x = x + y
    return module.mlp(module.norm2(x), residual=x)


def stage(module: SwinStage, x: Tensor, valid: Tensor) -> Tensor:
    """``SwinStage.forward``: (B, H, W, C) -> (B, H', W, C_out) with W a multiple of the window."""
    mask = None
    if len(module.blocks) >= 2:
        h = x.shape[1]
        rows = h + (-h) % module.window
        mask = shift_mask(rows, x.shape[2], module.window, module.shift, x.device)
    for layer in module.blocks:
        x = block(layer, x, valid, mask)
    return module.scale(x) if module.scale is not None else x


def encode_features(encoder: SwinEncoder, spec: Tensor, valid: Tensor) -> list[Tensor]:
    """``SwinEncoder.forward``: (B, 2, F, 2 W) -> feature maps (B, C_i, H_i, W), fine to coarse."""
    x = stage(encoder.pre_nn, encoder.patch_embed(spec).permute(0, 2, 3, 1), valid)
    feats = [x]
    for layer in encoder.stages:
        x = stage(layer, x, valid)
        feats.append(x)
    return [f.permute(0, 3, 1, 2) for f in feats]


def deembed(module: PatchDeEmbed, x: Tensor, valid: Tensor) -> Tensor:
    """``PatchDeEmbed.straightforward`` with escx's zero borders at the last real column.

    Both convolutions zero-pad; here the columns past the real ones are zeroed before each, so
    the last real columns see zeros as in escx.
    """
    fine = valid.repeat_interleave(module.patch_size[1])
    expanded = module.shuffle(module.expand(x * valid[None, None, None, :]))
    return module.out(expanded * fine[None, None, None, :])


class MaskedSwinDecoder(Decoder):
    """A view of a :class:`SwinDecoder` that runs on the padded grid with a column mask.

    It has the :class:`~escx.backbones.base.Decoder` interface (``stage``, ``head``, ``forward``
    with ``refine``), so a quantizer's own ``encode`` drives it as it drives the decoder.

    Args:
        decoder: the codec's decoder (not copied).
        valid: (W,) 0/1 float mask of real time patches.
    """

    def __init__(self, decoder: SwinDecoder, valid: Tensor) -> None:
        super().__init__()
        self.inner = [decoder]  # a list: not registered as a submodule (no parameters here)
        self.valid = valid

    @property
    def stage_shapes(self):
        return self.inner[0].stage_shapes

    def stage(self, index: int, h: Tensor) -> Tensor:
        x = stage(self.inner[0].stages[index], h.permute(0, 2, 3, 1), self.valid)
        return x.permute(0, 3, 1, 2)

    def head(self, h: Tensor) -> Tensor:
        decoder = self.inner[0]
        h = stage(decoder.post_nn, h.permute(0, 2, 3, 1), self.valid).permute(0, 3, 1, 2)
        return deembed(decoder.patch_deembed, h, self.valid)
