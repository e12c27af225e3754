"""Quantizers: product VQ, residual VQ (product and plain) and cross-scale residual VQ, and the
codebook kinds that fill their codebook slots (VQ, FSQ, LFQ, SimVQ)."""

# Register the built-in codebook kinds with the package, so a quantizer built without the CLI
# (Python, tests) finds them.
from escx.quantizers import codebook, fsq, lfq, simvq  # noqa: E402, F401, I001
from escx.quantizers.base import QUANTIZERS, Quantizer, QuantizerOutput
from escx.quantizers.kinds import CODEBOOKS, CodebookKind

__all__ = ["CODEBOOKS", "QUANTIZERS", "CodebookKind", "Quantizer", "QuantizerOutput"]
