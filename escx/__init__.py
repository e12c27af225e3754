"""escx: a Lightning-based experimentation framework for neural speech codecs.

Public API::

    import escx
    codec = escx.build_codec("experiments/esc.yaml")        # or escx.ESC(), escx.DAC(), ...
    codes = codec.encode(audio, n_streams=6)                 # (B, 6, 3, frames) int64
    audio_hat = codec.decode(codes, length=audio.shape[-1])  # (B, L)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "build_codec": "escx.config",
    "codec_config_dict": "escx.config",
    "registries": "escx.config",
    "Codec": "escx.codecs.base",
    "STFTCodec": "escx.codecs.stft_codec",
    "ESC": "escx.codecs.stft_codec",
    "DAC": "escx.codecs.waveform",
    "load_codec": "escx.api",
    "CodecHandle": "escx.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # Lazy so that `import escx` stays fast for the command line.
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'escx' has no attribute {name!r}")
