"""PyTorch-facing wrappers of the native kernels. Each returns None when it cannot run (no
library, an unsupported shape or dtype); the caller then uses its PyTorch route.

Inference only: no autograd. Inputs must be CPU tensors; they are made contiguous here.
"""

from __future__ import annotations

import torch
from torch import Tensor

from escx.kernels.build import library

_DTYPES = (torch.float32, torch.bfloat16)


def _usable(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in _DTYPES and x.numel() > 0


def window_attention(
    qkv: Tensor,
    bias: Tensor,
    masks: Tensor | None,
    grid: tuple[int, int, int],
    heads: int,
    prepared: bool = False,
) -> Tensor | None:
    """Multi-head attention inside 4x4 windows.

    Args:
        qkv: (B * nh * nw, 16, 3C) projections of the windows of a (B, nh, nw) window grid, in
            window order; q, k and v parts head-major.
        bias: (heads, 16, 16) relative position bias, [query][key].
        masks: (3, 16, 16) additive masks of the last window row, the last window column and the
            corner window of a shifted grid (``boundary_masks``), or None.
        grid: (B, nh, nw).
        heads: number of heads.
        prepared: ``bias`` and ``masks`` are already :func:`prepare_bias` output (a caller that
            attends with the same bias many times prepares it once).

    Returns:
        (B * nh * nw, 16, C) in ``qkv``'s dtype, or None.
    """
    lib = library()
    windows, n, c3 = qkv.shape
    if lib is None or n != 16 or c3 % (3 * heads) or not _usable(qkv):
        return None
    qkv = qkv.contiguous()
    hd = c3 // (3 * heads)
    out = qkv.new_empty(windows, n, c3 // 3)
    bias_t = bias if prepared else prepare_bias(bias)
    masks_t = masks if prepared or masks is None else prepare_bias(masks)
    status = lib.escx_window_attention(
        qkv.data_ptr(), out.data_ptr(), bias_t.data_ptr(),
        None if masks_t is None else masks_t.data_ptr(),
        windows, grid[1], grid[2], heads, hd, hd**-0.5,
        int(qkv.dtype == torch.bfloat16), torch.get_num_threads(),
    )  # fmt: skip
    return out if status == 0 else None


def prepare_bias(bias: Tensor) -> Tensor:
    """A (..., 16, 16) [query][key] bias or mask as the kernel reads it: fp32, [key][query]."""
    return bias.detach().float().transpose(-1, -2).contiguous()


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor | None:
    """LayerNorm over the last axis, output in ``x``'s dtype (as PyTorch's for bf16 input).

    Args:
        x: (..., C).
        weight, bias: (C,) affine parameters (any float dtype; used in fp32).
        eps: added to the variance.

    Returns:
        (..., C), or None.
    """
    lib = library()
    if lib is None or not _usable(x):
        return None
    x = x.contiguous()
    gamma = weight.detach().float().contiguous()
    beta = bias.detach().float().contiguous()
    y = torch.empty_like(x)
    c = x.shape[-1]
    status = lib.escx_layer_norm(
        x.data_ptr(), y.data_ptr(), gamma.data_ptr(), beta.data_ptr(), x.numel() // c, c, eps,
        int(x.dtype == torch.bfloat16), torch.get_num_threads(),
    )  # fmt: skip
    return y if status == 0 else None
