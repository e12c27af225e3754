"""escx's native CPU kernels against plain PyTorch, and the fallback when they are off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from escx import kernels
from escx.backbones.norm import LayerNorm
from escx.backbones.swin_layers import boundary_masks, shift_mask

needs_kernels = pytest.mark.skipif(
    kernels.unavailable_reason() is not None,
    reason=f"native kernels unavailable: {kernels.unavailable_reason()}",
)


def _reference_attention(qkv, bias, full_mask, heads):
    """softmax(q k^T / sqrt(hd) + bias + mask) v per window, in float64."""
    windows, n, c3 = qkv.shape
    hd = c3 // (3 * heads)
    q, k, v = qkv.double().view(windows, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) * hd**-0.5 + bias.double()
    if full_mask is not None:
        scores = scores + full_mask.double()[:, None]
    out = torch.softmax(scores, dim=-1) @ v
    return out.transpose(1, 2).reshape(windows, n, heads * hd)


@needs_kernels
@pytest.mark.parametrize(
    "heads,hd", [(3, 15), (6, 12), (24, 6), (12, 8), (24, 16), (3, 24), (2, 5), (1, 40)]
)
@pytest.mark.parametrize("shifted", [False, True])
def test_window_attention_is_softmax_attention(heads: int, hd: int, shifted: bool) -> None:
    torch.manual_seed(heads * 100 + hd)
    grid = (2, 3, 5)  # B, window rows, window columns
    windows = grid[0] * grid[1] * grid[2]
    qkv = torch.randn(windows, 16, 3 * heads * hd) * 2
    bias = torch.randn(heads, 16, 16)
    masks = boundary_masks(4, 2, torch.device("cpu")) if shifted else None
    full = shift_mask(4 * grid[1], 4 * grid[2], 4, 2, torch.device("cpu")) if shifted else None
    full = full.repeat(grid[0], 1, 1) if shifted else None
    out = kernels.window_attention(qkv, bias, masks, grid, heads)
    assert out is not None and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _reference_attention(qkv, bias, full, heads),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


@needs_kernels
def test_window_attention_bf16_rounds_the_fp32_result() -> None:
    torch.manual_seed(1)
    qkv = torch.randn(40, 16, 3 * 45).bfloat16()
    bias = torch.randn(3, 16, 16)
    out = kernels.window_attention(qkv, bias, None, (1, 4, 10), 3)
    assert out is not None and out.dtype == torch.bfloat16
    exact = _reference_attention(qkv.float(), bias, None, 3).float()
    torch.testing.assert_close(out.float(), exact.bfloat16().float(), rtol=0.01, atol=0.01)
    assert (out.float() == exact.bfloat16().float()).float().mean() > 0.99


@needs_kernels
def test_window_attention_declines_what_it_does_not_handle() -> None:
    bias = torch.zeros(3, 9, 9)
    assert kernels.window_attention(torch.randn(4, 9, 27), bias, None, (1, 2, 2), 3) is None
    assert kernels.window_attention(torch.randn(4, 16, 27).half(), bias, None, (1, 2, 2), 3) is None


@needs_kernels
@pytest.mark.parametrize("width", [1, 3, 16, 17, 45, 90, 384, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_norm_matches_pytorch(width: int, dtype: torch.dtype) -> None:
    torch.manual_seed(width)
    x = (torch.randn(3, 37, width) * 3 + 1).to(dtype)
    weight, bias = torch.randn(width), torch.randn(width)
    out = kernels.layer_norm(x, weight, bias, 1e-5)
    expected = F.layer_norm(x.float(), (width,), weight, bias, 1e-5)
    assert out is not None and out.dtype == dtype and out.shape == x.shape
    if dtype == torch.float32:
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    else:  # both round the same fp32 result; allow one bf16 step where fp32 sums differ
        torch.testing.assert_close(out.float(), expected.bfloat16().float(), rtol=0.01, atol=0.02)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env={**os.environ, **env},
    )  # fmt: skip


FALLBACK = """
import torch, escx
from escx import kernels
from escx.backbones.swin_layers import SwinStage
from escx.perf import straightforward
print(kernels.unavailable_reason())
torch.manual_seed(0)
stage = SwinStage(45, 45, heads=3, depth=2).eval()
x = torch.randn(1, 8, 12, 45)
with torch.no_grad():
    fast = stage(x)
    with straightforward():
        plain = stage(x)
torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
print("same")
"""


def test_kernels_switched_off_fall_back_to_pytorch() -> None:
    done = _run(FALLBACK, ESCX_NATIVE_KERNELS="0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["ESCX_NATIVE_KERNELS=0", "same"]


def test_a_failed_build_falls_back_and_leaves_no_library(tmp_path) -> None:
    done = _run(FALLBACK, CC="false", ESCX_CACHE_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    reason, same = done.stdout.split("\n")[:2]
    assert reason.startswith("build failed") and same == "same"
    assert not list(tmp_path.rglob("*.so*")), "a failed build must not leave a library behind"


@needs_kernels
def test_switched_off_kernels_decline_and_restore() -> None:
    x = torch.randn(4, 45)
    weight, bias = torch.ones(45), torch.zeros(45)
    with kernels.switched_off():
        assert kernels.layer_norm(x, weight, bias, 1e-5) is None
    assert kernels.layer_norm(x, weight, bias, 1e-5) is not None


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_module_is_nn_layer_norm(bias: bool) -> None:
    torch.manual_seed(0)
    mine = LayerNorm(45, bias=bias)
    torch.nn.init.normal_(mine.weight)
    plain = torch.nn.LayerNorm(45, bias=bias)
    plain.load_state_dict(mine.state_dict())
    x = torch.randn(2, 7, 45, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(mine(x), plain(x), rtol=1e-5, atol=1e-5)
    mine(x).square().sum().backward()  # training takes PyTorch's kernel, with gradients
    assert mine.weight.grad is not None and x.grad is not None
