"""Discriminator interface and registry (adversarial training, ESC-Base(adv))."""

from __future__ import annotations

from torch import Tensor, nn

from escx.registry import Registry


class Discriminator(nn.Module):
    """A set of sub-discriminators judging 16 kHz waveforms.

    ``forward(audio)`` takes audio of shape (B, L) and returns ``(logits, features)``: one entry per
    sub-discriminator; ``logits[i]`` is the final score map (any shape starting with B) and
    ``features[i]`` the list of its intermediate activations (each starting with B), which the
    feature-matching loss compares between real and generated audio.
    """

    def forward(self, audio: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        raise NotImplementedError


DISCRIMINATORS: Registry = Registry("discriminator", Discriminator)
