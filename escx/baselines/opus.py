"""Opus (libopus through ``opuslib``) at a constant bitrate on raw packets.

Each clip is coded by a fresh encoder in VoIP mode, 20 ms frames, hard CBR (``vbr`` off): every
packet has the same size, so the bitrate is exact (15 bytes per frame at 6 kbps, 23 at 9.2 kbps,
30 at 12 kbps). Packets are not put in an Ogg container; their bytes are the payload.

The encoder looks ahead (104 samples at 16 kHz, read from libopus): the input is padded by that
much and the decoded output trimmed by it, so output and input line up sample for sample.

Audio bandwidth is libopus' own choice: at 16 kHz input it codes narrowband (4 kHz) below about
12 kbps and wideband (8 kHz) from there. Forcing wideband at 9 kbps lowered PESQ-wb from 3.20 to
2.47 on held-out speech, so the choice is kept and each row records it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from escx.baselines.base import (
    BASELINES_INSTALL,
    BaselineUnavailable,
    ClassicalCodec,
    Coded,
    package_version,
)

FRAME_MS = 20
# OPUS_GET_BANDWIDTH values -> names (opus_defines.h)
BANDWIDTHS = {
    1101: "narrowband",
    1102: "mediumband",
    1103: "wideband",
    1104: "superwideband",
    1105: "fullband",
}


def _opuslib():  # -> the opuslib module
    try:
        import opuslib
        import opuslib.api.ctl
        import opuslib.api.encoder
        import opuslib.api.info
    # opuslib raises a bare Exception when ctypes cannot find libopus.
    except Exception as error:
        missing = "opuslib" if isinstance(error, ImportError) else "libopus"
        raise BaselineUnavailable(
            f"--baseline opus needs {missing}: apt-get install libopus0 (Debian/Ubuntu; "
            f"brew install opus on macOS), then {BASELINES_INSTALL}"
        ) from None
    return opuslib


class Opus(ClassicalCodec):
    """libopus, CBR, VoIP mode, 20 ms frames, at 6, 9 and 12 kbps by default."""

    name = "opus"
    bitrates = (6.0, 9.0, 12.0)
    supported = (6.0, 8.0, 9.0, 10.0, 12.0, 16.0, 24.0, 32.0)

    def __init__(self) -> None:
        self.lib = _opuslib()

    def version(self) -> str:
        lib = self.lib.api.info.get_version_string()
        lib = lib.decode() if isinstance(lib, bytes) else str(lib)
        return f"{lib}, opuslib {package_version('opuslib')}"

    def describe(self) -> str:
        return (
            f"opus: {self.version()}; CBR raw packets, VoIP mode, {FRAME_MS} ms frames, "
            "encoder look-ahead trimmed; audio bandwidth as libopus chose it"
        )

    def _encoder(self, kbps: float) -> Any:  # opuslib.Encoder
        encoder = self.lib.Encoder(self.sample_rate, 1, "voip")
        encoder.vbr = 0
        encoder.bitrate = int(round(kbps * 1000))
        encoder.complexity = 10
        return encoder

    def _ctl(self, encoder: Any, request: Any) -> int:
        return self.lib.api.encoder.encoder_ctl(encoder.encoder_state, request)

    def _code(self, audio: np.ndarray, kbps: float) -> Coded:
        encoder = self._encoder(kbps)
        decoder = self.lib.Decoder(self.sample_rate, 1)
        lookahead = self._ctl(encoder, self.lib.api.ctl.get_lookahead)
        frame = self.sample_rate * FRAME_MS // 1000
        frames = -(-(audio.size + lookahead) // frame)
        padded = np.zeros(frames * frame, dtype=np.float32)
        padded[: audio.size] = audio
        packets, bands = [], set()
        start = time.perf_counter()
        for i in range(frames):
            chunk = padded[i * frame : (i + 1) * frame].tobytes()
            packets.append(encoder.encode_float(chunk, frame))
            bands.add(self._ctl(encoder, self.lib.api.ctl.get_bandwidth))
        encoded = time.perf_counter()
        pieces = [np.frombuffer(decoder.decode_float(p, frame), dtype=np.float32) for p in packets]
        decoded = time.perf_counter()
        out = np.concatenate(pieces)[lookahead : lookahead + audio.size]
        return Coded(
            audio=np.ascontiguousarray(out, dtype=np.float32),
            payload_bytes=sum(len(p) for p in packets),
            encode_seconds=encoded - start,
            decode_seconds=decoded - encoded,
            bandwidth="/".join(BANDWIDTHS.get(b, str(b)) for b in sorted(bands)),
        )
