"""The fast inference path computes what the straightforward path computes.

escx's CPU inference path (fused oneDNN linears, lean window attention, one-copy shifts, the
composed de-embedding) must give the same codes as the plain PyTorch path
(``escx.perf.straightforward``), and audio equal to float rounding. Training's fast kernels are
tested in ``test_fast_training.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import escx
from escx.backbones import fused
from escx.backbones.swin_inference import rolled_copy
from escx.backbones.swin_layers import SwinStage, boundary_masks, shift_mask
from escx.perf import straightforward, tune_cpu_allocator

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"


@pytest.mark.parametrize("offset", [0, 1, 2, -2, 7])
def test_rolled_copy_is_torch_roll(offset: int) -> None:
    x = torch.randn(2, 6, 10, 3)
    out = torch.empty_like(x)
    rolled_copy(out, x, offset, offset)
    assert torch.equal(out, torch.roll(x, (-offset, -offset), (1, 2)))


def test_rolled_copy_pads_then_rolls_and_crops_back() -> None:
    x = torch.randn(2, 5, 9, 3)
    padded = F.pad(x, (0, 0, 0, 3, 0, 3))  # (2, 8, 12, 3)
    grid = torch.zeros(2, 8, 12, 3)
    rolled_copy(grid, x, 2, 2)
    assert torch.equal(grid, torch.roll(padded, (-2, -2), (1, 2)))
    back = torch.empty_like(x)
    rolled_copy(back, grid, -2, -2)
    assert torch.equal(back, x)


@pytest.mark.parametrize("grid", [(4, 4), (4, 12), (8, 4), (16, 20)])
def test_boundary_masks_rebuild_the_full_shift_mask(grid: tuple[int, int]) -> None:
    window, shift = 4, 2
    full = shift_mask(*grid, window, shift, torch.device("cpu"))
    nh, nw = grid[0] // window, grid[1] // window
    rebuilt = torch.zeros(nh, nw, window**2, window**2)
    row, col, corner = boundary_masks(window, shift, torch.device("cpu"))
    rebuilt[-1, :-1] += row
    rebuilt[:-1, -1] += col
    rebuilt[-1, -1] += corner
    assert torch.equal(rebuilt.view_as(full), full)


@pytest.mark.parametrize("rows,cols", [(2, 8), (3, 10), (8, 12), (5, 6)])
def test_swin_stage_fast_path_matches_straightforward(rows: int, cols: int) -> None:
    torch.manual_seed(0)
    stage = SwinStage(12, 12, heads=3, depth=2).eval()
    x = torch.randn(2, rows, cols, 12)
    with torch.no_grad():
        fast = stage(x)
        with straightforward():
            plain = stage(x)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", [None, "gelu"])
@pytest.mark.parametrize("with_residual", [False, True])
def test_fused_linear_matches_the_plain_composition(activation, with_residual) -> None:
    layer = torch.nn.Linear(45, 180)
    x = torch.randn(3, 7, 45)
    residual = torch.randn(3, 7, 180) if with_residual else None
    expected = layer(x)
    expected = F.gelu(expected) if activation else expected
    expected = expected + residual if with_residual else expected
    with torch.no_grad():
        out = fused.linear(x, layer, activation, residual)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_fused_linear_keeps_gradients_in_training() -> None:
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8, requires_grad=True)
    fused.linear(x, layer, "gelu", residual=x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_tune_cpu_allocator_is_idempotent() -> None:
    assert tune_cpu_allocator() == tune_cpu_allocator()


@pytest.fixture(scope="module")
def esc_base() -> escx.Codec:
    torch.manual_seed(0)
    return escx.build_codec("experiments/esc.yaml").eval()


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    files = sorted((SPEECH / "val").rglob("*.flac")) if SPEECH.is_dir() else []
    if not files:
        pytest.skip(f"real speech not found at {SPEECH}")
    audio, rate = sf.read(files[0], dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio[: 3 * rate])[None]


@pytest.mark.parametrize("streams", [1, 6])
def test_fast_codes_are_identical_to_the_straightforward_path(esc_base, speech, streams) -> None:
    with torch.inference_mode():
        fast_codes = esc_base.encode(speech, streams)
        fast_audio = esc_base.decode(fast_codes, speech.shape[-1])
        with straightforward():
            plain_codes = esc_base.encode(speech, streams)
            plain_audio = esc_base.decode(plain_codes, speech.shape[-1])
    assert torch.equal(fast_codes, plain_codes)
    torch.testing.assert_close(fast_audio, plain_audio, rtol=0, atol=1e-5)


def test_bf16_inference_precision(esc_base, speech) -> None:
    with torch.inference_mode():
        reference = esc_base.encode(speech, 6)
        esc_base.set_inference_precision("bf16")
        try:
            codes = esc_base.encode(speech, 6)
            audio = esc_base.decode(codes, speech.shape[-1])
        finally:
            esc_base.set_inference_precision("fp32")
    assert codes.shape == reference.shape and codes.dtype == torch.int64
    assert audio.dtype == torch.float32 and audio.shape == speech.shape
    assert torch.isfinite(audio).all()


def test_unknown_precision_is_a_one_line_error(esc_base) -> None:
    with pytest.raises(ValueError, match="unknown precision 'fp8'; use one of fp32, bf16"):
        esc_base.set_inference_precision("fp8")
