"""Native CPU kernels for the inference fast path: window attention and LayerNorm.

Small C sources compiled on first use with the system compiler (:mod:`escx.kernels.build`),
called through :mod:`escx.kernels.ops`. They compute the same functions as the PyTorch routes
they replace, to float rounding; tests compare the two.
"""

from escx.kernels.build import unavailable_reason
from escx.kernels.ops import layer_norm, prepare_bias, window_attention
from escx.perf import without_native_kernels as switched_off

__all__ = [
    "layer_norm",
    "prepare_bias",
    "switched_off",
    "unavailable_reason",
    "window_attention",
]
