"""Quantizers: product VQ, residual VQ and cross-scale residual VQ."""

from escx.quantizers.base import QUANTIZERS, Quantizer, QuantizerOutput

__all__ = ["QUANTIZERS", "Quantizer", "QuantizerOutput"]
