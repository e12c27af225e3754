"""escx's autograd-aware CPU kernels compute what the straightforward path computes.

Training takes three of them (``escx.perf``): the composed de-embedding, oneDNN linears with a
hand-written backward, and spelled-out window attention. Values and gradients must equal the
plain PyTorch path's to float rounding, so a training run's losses are the same either way.
"""

from __future__ import annotations

import pytest
import torch

import escx
from escx.backbones import fused
from escx.backbones.deembed import PatchDeEmbed
from escx.backbones.swin_layers import SwinStage
from escx.perf import straightforward
from escx.training.objective import ESC_LOSS_WEIGHTS, Objective


def _value_and_grads(module: torch.nn.Module, x: torch.Tensor):
    x = x.detach().requires_grad_()
    out = module(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *module.parameters()])
    return out.detach(), grads


def _assert_same(fast, plain, rtol: float = 1e-5) -> None:
    (out, grads), (out_ref, grads_ref) = fast, plain
    torch.testing.assert_close(out, out_ref, rtol=rtol, atol=rtol * float(out_ref.abs().max()))
    for g, ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, ref, rtol=rtol, atol=rtol * float(ref.abs().max()))


@pytest.mark.parametrize("patch", [(3, 2), (2, 2), (1, 1)])
@pytest.mark.parametrize("grid", [(64, 20), (3, 3), (5, 7), (2, 9), (7, 2)])
def test_composed_deembed_is_the_two_convolutions(patch, grid) -> None:
    # (2, 9) and (7, 2) are thinner than a border slab: they take the straightforward route.
    torch.manual_seed(0)
    deembed = PatchDeEmbed(6, 2, patch)
    x = torch.randn(2, 6, *grid)
    fast = _value_and_grads(deembed, x)
    with straightforward():
        plain = _value_and_grads(deembed, x)
    assert fast[0].shape == (2, 2, grid[0] * patch[0], grid[1] * patch[1])
    _assert_same(fast, plain)
    with torch.no_grad():  # inference caches the composed kernel; a weight update refreshes it
        torch.testing.assert_close(deembed(x), plain[0], rtol=1e-5, atol=1e-5)
        deembed.out.weight.mul_(2.0)
        with straightforward():
            expected = deembed(x)
        torch.testing.assert_close(deembed(x), expected, rtol=1e-5, atol=1e-5)


def test_training_linear_matches_the_plain_layer() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(45, 135)
    x = torch.randn(4, 50, 45)

    def run():
        inputs = x.clone().requires_grad_()
        out = fused.linear(inputs, layer, "gelu", residual=None)
        grads = torch.autograd.grad(out.square().sum(), [inputs, layer.weight, layer.bias])
        return out.detach(), grads

    fast = run()
    with straightforward():
        plain = run()
    _assert_same(fast, plain)


@pytest.mark.parametrize("rows", [2, 8])
def test_training_window_attention_matches_sdpa(rows: int) -> None:
    torch.manual_seed(0)
    stage = SwinStage(12, 12, heads=3, depth=2)
    x = torch.randn(2, rows, 12, 12)
    fast = _value_and_grads(stage, x)
    with straightforward():
        plain = _value_and_grads(stage, x)
    _assert_same(fast, plain)


@pytest.mark.parametrize("bypass", [True, False], ids=["pretraining", "quantized"])
def test_esc_base_training_step_matches_the_straightforward_step(bypass) -> None:
    torch.manual_seed(0)
    codec = escx.build_codec("experiments/esc.yaml").train()
    objective = Objective(ESC_LOSS_WEIGHTS)
    audio = torch.randn(2, 6400, generator=torch.Generator().manual_seed(1)) * 0.1

    def step():
        codec.zero_grad(set_to_none=True)
        out = codec(audio, codec.max_streams, bypass_quantizer=bypass)
        terms = objective.generator_terms(audio, out)
        # Gradients of a well-conditioned loss: ESC's power-law STFT loss and the log-mel loss
        # have unbounded slopes near zero, where rounding-level differences are amplified.
        (out.spec - out.target_spec).square().mean().backward()
        grads = {n: p.grad.clone() for n, p in codec.named_parameters() if p.grad is not None}
        return {k: float(v.detach()) for k, v in terms.items()}, grads

    fast_terms, fast_grads = step()
    with straightforward():
        terms, grads = step()
    assert fast_terms == pytest.approx(terms, rel=1e-5)
    assert fast_grads.keys() == grads.keys()
    if not bypass:
        return  # a rounding-level change may flip a near-tie code, and with it some gradients
    for name, grad in grads.items():
        scale = float(grad.norm()) or 1.0
        assert float((fast_grads[name] - grad).norm()) <= 1e-4 * scale, name
