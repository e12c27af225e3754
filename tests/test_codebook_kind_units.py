"""Each codebook kind and estimator on hand-made vectors, where the right answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from escx.quantizers.estimators import rotation_trick, straight_through
from escx.quantizers.fsq import FSQ
from escx.quantizers.lfq import LFQ
from escx.quantizers.simvq import SimVQ


def _rotation(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The rotation taking z's direction to q's, as an explicit (D, D) matrix."""
    z_hat, q_hat = z / z.norm(), q / q.norm()
    r = (z_hat + q_hat) / (z_hat + q_hat).norm()
    eye = torch.eye(len(z), dtype=z.dtype)
    return eye - 2 * torch.outer(r, r) + 2 * torch.outer(q_hat, z_hat)


def test_rotation_trick_returns_the_codeword_and_rotates_the_gradient() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, dtype=torch.float64, generator=gen).requires_grad_()
    q = torch.randn(6, dtype=torch.float64, generator=gen)
    g = torch.randn(6, dtype=torch.float64, generator=gen)
    out = rotation_trick(z[None], q[None])[0]
    torch.testing.assert_close(out.detach(), q)
    out.backward(g)
    rot = _rotation(z.detach(), q)
    torch.testing.assert_close(rot @ rot.T, torch.eye(6, dtype=torch.float64))  # a rotation
    torch.testing.assert_close(rot @ (z.detach() / z.norm()), q / q.norm())
    # d(s R z)/dz = s R with R and s = |q| / |z| held constant.
    torch.testing.assert_close(z.grad, (q.norm() / z.detach().norm()) * rot.T @ g)
    # Straight-through copies the gradient unchanged instead.
    z.grad = None
    straight_through(z[None], q[None])[0].backward(g)
    torch.testing.assert_close(z.grad, g)


def test_fsq_reaches_every_code_and_its_grid_matches_lookup() -> None:
    fsq = FSQ(3, 8 * 5 * 3, levels=[8, 5, 3]).eval()
    axis = torch.linspace(-4, 4, 41)
    z = torch.cartesian_prod(axis, axis, axis)[None]  # (1, 41^3, 3): saturates every level
    q, codes, commit, codebook = fsq(z)
    assert sorted(codes.unique().tolist()) == list(range(120))
    assert torch.equal(fsq.lookup(codes), q) and torch.equal(fsq.encode(z), codes)
    assert float(commit.abs().sum() + codebook.abs().sum()) == 0.0  # FSQ has no losses
    # Per dimension L values spaced 1 / (L // 2) apart, within [-1, 1].
    for d, levels in enumerate([8, 5, 3]):
        values = q[0, :, d].unique()
        assert len(values) == levels and float(values.min()) == -1.0
        torch.testing.assert_close(values.diff(), torch.full((levels - 1,), 1 / (levels // 2)))


def test_fsq_later_residual_stages_use_a_finer_grid() -> None:
    first, second = FSQ(2, 25, 0, levels=[5, 5]), FSQ(2, 25, 1, levels=[5, 5])
    z = torch.tensor([[[0.2, -0.3]]])
    assert torch.equal(second.lookup(second.encode(z)) * 4, first.lookup(first.encode(z * 4)))
    assert float(second.lookup(torch.tensor(24)).abs().max()) == 0.25  # grid / (L - 1)


def test_fsq_straight_through_gradient_flows_through_the_bound() -> None:
    fsq = FSQ(2, 16, levels=[4, 4]).train()
    z = torch.tensor([[[0.3, -2.0]]], requires_grad=True)
    q, *_ = fsq(z)
    q.sum().backward()
    assert bool((z.grad > 0).all())  # d tanh > 0, smaller where saturated
    assert float(z.grad[0, 0, 0]) > float(z.grad[0, 0, 1])


@pytest.mark.parametrize("spherical", [False, True])
def test_lfq_codes_are_the_sign_bits_and_lookup_inverts_them(spherical: bool) -> None:
    lfq = LFQ(4, 16, bits=4, spherical=spherical).eval()
    codes = torch.arange(16)
    words = lfq.lookup(codes)
    assert torch.equal(lfq.encode(words), codes)
    level = 0.5 if spherical else 1.0  # 1 / sqrt(4) on the sphere
    assert torch.equal(words.abs(), torch.full((16, 4), level))
    z = torch.tensor([[[0.3, -1.0, 2.0, -0.1]]])
    assert int(lfq.encode(z)) == 0b1010  # dimension 0 is the most significant bit
    q, code, *_ = lfq(z)
    assert torch.equal(q, lfq.lookup(code))


def test_lfq_entropy_penalty_prefers_confident_codes_spread_over_the_batch() -> None:
    lfq = LFQ(2, 4, bits=2, entropy_weight=1.0, temperature=0.5).train()
    spread = torch.tensor([[[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]]])
    collapsed = torch.tensor([[[3.0, 3.0]] * 4])
    unsure = torch.zeros(1, 4, 2)
    penalty = {name: float(lfq(z)[3]) for name, z in
               [("spread", spread), ("collapsed", collapsed), ("unsure", unsure)]}  # fmt: skip
    assert penalty["spread"] < penalty["collapsed"] and penalty["spread"] < penalty["unsure"]
    assert penalty["spread"] == pytest.approx(-2 * math.log(2), abs=1e-3)  # 2 bits, all used


def test_lfq_joint_entropy_sees_correlated_bits_that_the_per_bit_approximation_misses() -> None:
    """Two codes of four used, each bit 50/50: the per-bit batch entropy is the full 2 ln 2, the
    joint one ln 2; for independent bits the two agree."""
    kinds = {e: LFQ(2, 4, bits=2, entropy_weight=1.0, temperature=0.5, entropy=e).train()
             for e in ("joint", "per_bit")}  # fmt: skip
    correlated = torch.tensor([[[3.0, 3.0], [-3.0, -3.0]] * 2])
    spread = torch.tensor([[[3.0, 3.0], [-3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]]])
    penalty = {(e, name): float(lfq(z)[3]) for e, lfq in kinds.items()
               for name, z in (("correlated", correlated), ("spread", spread))}  # fmt: skip
    assert penalty[("per_bit", "correlated")] == pytest.approx(penalty[("per_bit", "spread")])
    assert penalty[("joint", "correlated")] - penalty[("joint", "spread")] == pytest.approx(
        math.log(2), abs=1e-3
    )
    assert penalty[("joint", "spread")] == pytest.approx(penalty[("per_bit", "spread")], abs=1e-6)
    z = torch.randn(3, 7, 2, requires_grad=True)
    kinds["joint"](z)[3].sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_simvq_codebook_is_the_frozen_basis_through_the_learned_map() -> None:
    book = SimVQ(3, 8).train()
    assert not any(n == "basis" for n, _ in book.named_parameters())
    torch.testing.assert_close(book.codewords(), book.basis)  # identity map at the start
    z = torch.randn(2, 5, 3)
    _, _, _, codebook_loss = book(z)
    codebook_loss.sum().backward()
    assert book.map.weight.grad is not None and bool(book.map.weight.grad.abs().sum() > 0)
    with torch.no_grad():
        book.map.weight.mul_(2.0)
    torch.testing.assert_close(book.codewords(), 2 * book.basis)  # every entry moved
