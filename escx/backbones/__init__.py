"""Encoder/decoder backbones over the patched complex STFT."""

from escx.backbones.base import DECODERS, ENCODERS, Decoder, Encoder, FeatureShape

__all__ = ["DECODERS", "ENCODERS", "Decoder", "Encoder", "FeatureShape"]
