"""Discriminators for adversarial training: the interface, its registry and the built-ins."""

from escx.discriminators.base import DISCRIMINATORS, Discriminator
from escx.discriminators.period import MultiPeriodDiscriminator
from escx.discriminators.spectral import MultiBandSTFTDiscriminator, MultiScaleSTFTDiscriminator
from escx.discriminators.waveform import MultiScaleDiscriminator

__all__ = [
    "DISCRIMINATORS",
    "Discriminator",
    "MultiBandSTFTDiscriminator",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "MultiScaleSTFTDiscriminator",
]
