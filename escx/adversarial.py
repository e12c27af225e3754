"""Adversarial losses and a wrapper that runs several discriminators as one (docs/esc.md §13.6).

Conventions (those of :class:`escx.discriminators.base.Discriminator`): ``logits`` is a list
with one score map per sub-discriminator; ``features`` a list with, per sub-discriminator, the
list of its intermediate activations. The logit itself is **not** among the features, so the
feature-matching loss runs over every entry of ``features`` (DAC and ESC use "all maps but the
last" of a list that ends with the logit, which is the same set).

Every loss is a **sum over sub-discriminators** (and, for feature matching, over maps) of
per-map means, as in DAC/ESC: the ESC-Base(adv) weights (GAN 1, feature matching 2) were tuned for
this scale, so it grows with the number of sub-discriminators. Losses are computed in float32, so
bf16 autocast outputs are fine. Empty inputs (no discriminator) give a zero loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.discriminators.base import Discriminator

AdversarialKind = Literal["lsgan", "hinge"]
KINDS = ("lsgan", "hinge")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown adversarial loss kind {kind!r}; use one of {', '.join(KINDS)}")


def _zero(tensors: Sequence[Tensor]) -> Tensor:
    device = tensors[0].device if tensors else None
    return torch.zeros((), device=device)


def generator_adversarial_loss(
    fake_logits: Sequence[Tensor], kind: AdversarialKind = "lsgan"
) -> Tensor:
    """Generator's adversarial loss on the discriminator scores of generated audio.

    * ``lsgan`` (ESC, DAC, HiFi-GAN): ``sum_k mean((1 - D_k(fake))**2)``.
    * ``hinge``: ``sum_k mean(relu(1 - D_k(fake)))``, EnCodec's form. Many image GANs use
      ``-mean(D(fake))`` instead; EnCodec's version stops pushing once a score passes 1, which keeps
      the generator from chasing unbounded discriminator scores.

    Args:
        fake_logits: per sub-discriminator, the score map of generated audio (any shape).
        kind: ``"lsgan"`` or ``"hinge"``.

    Returns:
        Scalar float32 loss; 0 when every score is >= 1 (hinge) or == 1 (lsgan), or for an empty
        list.
    """
    _check_kind(kind)
    loss = _zero(fake_logits)
    for logit in fake_logits:
        logit = logit.float()
        loss = loss + ((1 - logit) ** 2 if kind == "lsgan" else F.relu(1 - logit)).mean()
    return loss


def discriminator_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor], kind: AdversarialKind = "lsgan"
) -> Tensor:
    """Discriminator loss: real audio should score 1 (or more), generated audio 0 (or -1 or less).

    * ``lsgan``: ``sum_k mean(D_k(fake)**2) + mean((1 - D_k(real))**2)`` (docs/esc.md §13.6).
    * ``hinge``: ``sum_k mean(relu(1 - D_k(real))) + mean(relu(1 + D_k(fake)))``.

    Pass the scores of *detached* generated audio so this loss does not reach the generator.

    Args:
        real_logits: per sub-discriminator, the score map of real audio.
        fake_logits: the same for generated audio, in the same order.
        kind: ``"lsgan"`` or ``"hinge"``.

    Returns:
        Scalar float32 loss (0 for empty lists).

    Raises:
        ValueError: for an unknown ``kind`` or lists of different lengths.
    """
    _check_kind(kind)
    if len(real_logits) != len(fake_logits):
        raise ValueError(
            f"got {len(real_logits)} real and {len(fake_logits)} fake logits; score real and "
            "generated audio with the same discriminator"
        )
    loss = _zero(real_logits)
    for real, fake in zip(real_logits, fake_logits, strict=True):
        real, fake = real.float(), fake.float()
        if kind == "lsgan":
            loss = loss + (fake**2).mean() + ((1 - real) ** 2).mean()
        else:
            loss = loss + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return loss


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]
) -> Tensor:
    """Sum over sub-discriminators and intermediate maps of ``L1(fake, stopgrad(real))``.

    ESC sums the L1 distances over every intermediate feature map (docs/esc.md §13.5), each L1 a
    mean over the map's elements, as in DAC (the logits are not features; see the module docstring).

    Args:
        real_features: ``features`` returned by a discriminator for real audio.
        fake_features: the same for generated audio; shapes must match map by map.

    Returns:
        Scalar float32 loss (0 for empty lists); no gradient flows into ``real_features``.

    Raises:
        ValueError: if the nesting or the map shapes differ.
    """
    if len(real_features) != len(fake_features):
        raise ValueError(
            f"got features of {len(real_features)} real and {len(fake_features)} fake "
            "sub-discriminators; score real and generated audio with the same discriminator"
        )
    loss = _zero([f for maps in fake_features for f in maps])
    for k, (real_maps, fake_maps) in enumerate(zip(real_features, fake_features, strict=True)):
        if len(real_maps) != len(fake_maps):
            raise ValueError(
                f"sub-discriminator {k} has {len(real_maps)} real and {len(fake_maps)} fake maps"
            )
        for real, fake in zip(real_maps, fake_maps, strict=True):
            if real.shape != fake.shape:
                raise ValueError(
                    f"feature map shapes differ in sub-discriminator {k}: real "
                    f"{tuple(real.shape)} vs fake {tuple(fake.shape)}; real and generated audio "
                    "must have the same length"
                )
            loss = loss + F.l1_loss(fake.float(), real.detach().float())
    return loss


class CombinedDiscriminator(nn.Module):
    """Runs several discriminators and concatenates their per-sub-discriminator outputs.

    With it the training module treats any list of discriminators (MPD + MRD for ESC-Base(adv))
    as one. An empty list is allowed and means "no adversarial training": ``forward`` returns two
    empty lists and :attr:`enabled` is False.

    Args:
        discriminators: the discriminators to run, in order.
    """

    def __init__(self, discriminators: Sequence[Discriminator] = ()) -> None:
        super().__init__()
        for d in discriminators:
            if not isinstance(d, Discriminator):
                raise ValueError(
                    f"CombinedDiscriminator takes Discriminator instances, got "
                    f"{type(d).__name__}; register the class with @DISCRIMINATORS.register"
                )
        self.discriminators = nn.ModuleList(discriminators)

    @property
    def enabled(self) -> bool:
        """True when at least one discriminator is wrapped."""
        return len(self.discriminators) > 0

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Score a batch with every wrapped discriminator.

        Args:
            audio: (B, L) waveform.

        Returns:
            ``(logits, features)``: the concatenation, in order, of every discriminator's lists.
        """
        logits: list[Tensor] = []
        features: list[list[Tensor]] = []
        for disc in self.discriminators:
            d_logits, d_features = disc(audio)
            logits.extend(d_logits)
            features.extend(d_features)
        return logits, features
