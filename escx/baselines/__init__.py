"""Classical reference codecs (Opus, Codec2) to put beside a trained codec's results.

``escx eval --baseline opus --baseline codec2`` evaluates them on the same clips, with the same
metrics, into the same report; :func:`escx.evaluation.evaluate_baselines` does it from Python.
Their libraries are optional (the ``baselines`` extra, plus the system's libopus for Opus).

Example::

    from escx.baselines import load_baseline
    opus = load_baseline("opus")
    coded = opus.code(audio, 9.0)      # audio: (L,) float32 at 16 kHz
    coded.payload_bytes, coded.audio.shape, opus.version()
"""

from __future__ import annotations

from escx.baselines.base import (
    BASELINES_INSTALL,
    BaselineUnavailable,
    ClassicalCodec,
    Coded,
)
from escx.baselines.codec2 import Codec2
from escx.baselines.opus import Opus

# name -> class, in report order
BASELINES: dict[str, type[ClassicalCodec]] = {"opus": Opus, "codec2": Codec2}


def load_baseline(name: str) -> ClassicalCodec:
    """The classical codec called ``name`` with its library loaded.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
        BaselineUnavailable: its library is missing (the message says how to install it).
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    return BASELINES[name]()


__all__ = [
    "BASELINES",
    "BASELINES_INSTALL",
    "BaselineUnavailable",
    "ClassicalCodec",
    "Codec2",
    "Coded",
    "Opus",
    "load_baseline",
]
