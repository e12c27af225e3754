"""Discriminators (contract over the registry), adversarial losses and CombinedDiscriminator."""

from __future__ import annotations

import importlib

import pytest
import torch

from escx.adversarial import (
    CombinedDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from escx.discriminators.base import DISCRIMINATORS

for _module in ("period", "spectral", "waveform"):
    importlib.import_module(f"escx.discriminators.{_module}")

NAMES = [name for name, _ in DISCRIMINATORS.items()]
_CACHE: dict[str, torch.nn.Module] = {}


def make(name: str) -> torch.nn.Module:
    """Default-configured instance, built once per test session (the MPD is 41M parameters)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = DISCRIMINATORS.get(name)()
    disc = _CACHE[name]
    disc.zero_grad(set_to_none=True)
    return disc


def audio(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, length, generator=generator)


def check_outputs(logits, features, batch: int) -> None:
    assert len(logits) == len(features) > 0
    for logit, maps in zip(logits, features, strict=True):
        assert logit.shape[0] == batch and torch.isfinite(logit).all()
        assert len(maps) > 0
        for f in maps:
            assert f.shape[0] == batch and torch.isfinite(f).all()


def test_all_built_ins_are_registered() -> None:
    expected = {
        "MultiPeriodDiscriminator",
        "MultiBandSTFTDiscriminator",
        "MultiScaleSTFTDiscriminator",
        "MultiScaleDiscriminator",
    }
    assert expected <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_has_one_line_summary(name: str) -> None:
    doc = DISCRIMINATORS.get(name).__doc__
    assert doc and doc.strip().splitlines()[0].strip()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("length", [8000, 6421])
def test_forward_contract(name: str, length: int) -> None:
    disc = make(name)
    with torch.no_grad():
        logits, features = disc(audio(2, length))
    check_outputs(logits, features, batch=2)


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    disc = make(name)
    logits, features = disc(audio(1, 8000))
    loss = sum(x.mean() for x in logits) + sum(f.mean() for maps in features for f in maps)
    loss.backward()
    for pname, param in disc.named_parameters():
        assert param.grad is not None, f"no gradient reached {pname}"
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast(name: str) -> None:
    disc = make(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, features = disc(audio(1, 8000))
        check_outputs(logits, features, batch=1)
        loss = generator_adversarial_loss(logits) + feature_matching_loss(features, features)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    for pname, param in disc.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_raises_value_error(name: str) -> None:
    disc = make(name)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        disc(audio(1, 8000).unsqueeze(1))


@pytest.mark.parametrize("name", ["MultiBandSTFTDiscriminator", "MultiScaleSTFTDiscriminator"])
def test_too_short_audio_raises_value_error(name: str) -> None:
    with pytest.raises(ValueError, match="at least 2048 samples"):
        make(name)(audio(1, 1000))


def test_esc_discriminator_parameter_count() -> None:
    """docs/esc.md §11: DAC's MPD + MRD (ESC-Base(adv)'s discriminator) has 42,519,760 params."""
    count = sum(
        p.numel()
        for name in ("MultiPeriodDiscriminator", "MultiBandSTFTDiscriminator")
        for p in make(name).parameters()
    )
    assert count == 42_519_760


@pytest.mark.parametrize("name", ["MultiPeriodDiscriminator", "MultiBandSTFTDiscriminator"])
def test_dac_preprocessing_ignores_gain_and_dc(name: str) -> None:
    """docs/esc.md §13.6: the DAC discriminators see DC-removed, peak-normalised input."""
    disc = make(name)
    x = audio(2, 8000)
    with torch.no_grad():
        reference, _ = disc(x)
        scaled, _ = disc(3.0 * x + 0.05)
        silent, _ = disc(torch.zeros(1, 8000))
    for a, b in zip(reference, scaled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert all(torch.isfinite(s).all() for s in silent)


# ---- losses ------------------------------------------------------------------------------------


def test_generator_loss_values() -> None:
    perfect = [torch.ones(2, 1, 5), torch.ones(2, 3)]
    assert generator_adversarial_loss(perfect, "lsgan") == 0
    assert generator_adversarial_loss(perfect, "hinge") == 0
    # Hinge ignores scores beyond 1; LSGAN penalises them.
    assert generator_adversarial_loss([torch.full((2, 4), 3.0)], "hinge") == 0
    assert generator_adversarial_loss([torch.full((2, 4), 3.0)], "lsgan") == 4
    # Two sub-discriminators scoring 0 and -1: sums of per-map means.
    fake = [torch.zeros(2, 4), -torch.ones(1, 7)]
    assert generator_adversarial_loss(fake, "lsgan") == pytest.approx(1 + 4)
    assert generator_adversarial_loss(fake, "hinge") == pytest.approx(1 + 2)


def test_discriminator_loss_values() -> None:
    real, fake = [torch.ones(2, 1, 3)], [torch.zeros(2, 1, 3)]
    assert discriminator_loss(real, fake, "lsgan") == 0
    assert discriminator_loss(real, [-torch.ones(2, 1, 3)], "hinge") == 0
    # Swapped roles: LSGAN 1 + 1, hinge relu(1 - 0) + relu(1 + 1).
    assert discriminator_loss(fake, real, "lsgan") == pytest.approx(2.0)
    assert discriminator_loss(fake, real, "hinge") == pytest.approx(3.0)
    # Mixed map: half right, half wrong.
    mixed = [torch.tensor([[1.0, 0.0]])]
    assert discriminator_loss(mixed, mixed, "lsgan") == pytest.approx(0.5 + 0.5)


def test_feature_matching_loss() -> None:
    real = [[torch.ones(2, 3), torch.zeros(2, 5)], [torch.ones(1, 4)]]
    assert feature_matching_loss(real, real) == 0
    fake = [[torch.zeros(2, 3, requires_grad=True), torch.zeros(2, 5)], [3 * torch.ones(1, 4)]]
    real = [[m.clone().requires_grad_() for m in maps] for maps in real]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1 + 0 + 2)  # sum over maps of mean |fake - real|
    loss.backward()
    assert fake[0][0].grad is not None
    assert all(m.grad is None for maps in real for m in maps)  # real features are detached


def test_losses_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="kind"):
        generator_adversarial_loss([torch.ones(1)], "wasserstein")
    with pytest.raises(ValueError, match="same discriminator"):
        discriminator_loss([torch.ones(1)], [], "lsgan")
    with pytest.raises(ValueError, match="shapes differ"):
        feature_matching_loss([[torch.ones(1, 3)]], [[torch.ones(1, 4)]])


def test_combined_discriminator_concatenates() -> None:
    parts = [make("MultiScaleSTFTDiscriminator"), make("MultiScaleDiscriminator")]
    combined = CombinedDiscriminator(parts)
    x = audio(1, 8000)
    with torch.no_grad():
        logits, features = combined(x)
        expected = [part(x) for part in parts]
    assert len(logits) == len(features) == sum(len(e[0]) for e in expected)
    expected_logits = [logit for e in expected for logit in e[0]]
    for got, want in zip(logits, expected_logits, strict=True):
        torch.testing.assert_close(got, want)
    assert feature_matching_loss(features, features) == 0


def test_empty_combined_discriminator_means_no_adversary() -> None:
    combined = CombinedDiscriminator([])
    assert not combined.enabled and not list(combined.parameters())
    logits, features = combined(audio(1, 8000))
    assert logits == [] and features == []
    assert generator_adversarial_loss(logits) == 0
    assert discriminator_loss(logits, logits) == 0
    assert feature_matching_loss(features, features) == 0
    with pytest.raises(ValueError, match="Discriminator instances"):
        CombinedDiscriminator([torch.nn.Linear(2, 2)])
