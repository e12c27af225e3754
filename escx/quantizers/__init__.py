"""Quantizers: product VQ, residual VQ (product and plain) and cross-scale residual VQ."""

from escx.quantizers.base import QUANTIZERS, Quantizer, QuantizerOutput

__all__ = ["QUANTIZERS", "Quantizer", "QuantizerOutput"]
