"""Equality of an export with escx, checked the way Mimi's and FocalCodec's exports are.

For each clip: the codes ONNX Runtime computes against escx's (mismatch rate), the ONNX decoder
fed escx's codes against escx's decoder (cross-decoding, SNR per bitrate), escx's decoder fed
ONNX's codes against the ONNX decoder (and back), and the batch: clips cut to one length and
encoded together against each encoded alone (batch invariance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from escx.export.runtime import OnnxCodec


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """10 log10(|reference|^2 / |reference - test|^2); +inf when equal, NaN for silence."""
    reference, test = np.asarray(reference, np.float64), np.asarray(test, np.float64)
    signal, noise = float(np.sum(reference**2)), float(np.sum((reference - test) ** 2))
    if signal == 0:
        return math.nan
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


@dataclass
class Equality:
    """Results of :func:`compare`.

    Attributes:
        clips: clips compared.
        codes: codes compared (every stream, group and frame of every clip).
        mismatched: codes that differ.
        decode_snr_db: lowest SNR of the ONNX decoder on escx's codes against escx's decoder, per
            stream count.
        back_snr_db: lowest SNR of escx's decoder on the ONNX codes against the ONNX decoder, per
            stream count.
        batch_invariant: whether clips encoded as one batch got the codes they got alone (None
            with fewer than two clips).
        lengths: the clips' lengths in samples.
    """

    clips: int = 0
    codes: int = 0
    mismatched: int = 0
    decode_snr_db: dict[int, float] = field(default_factory=dict)
    back_snr_db: dict[int, float] = field(default_factory=dict)
    batch_invariant: bool | None = None
    lengths: list[int] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        """Fraction of codes that differ."""
        return self.mismatched / self.codes if self.codes else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "clips": self.clips, "codes": self.codes, "mismatched": self.mismatched,
            "mismatch_rate": self.mismatch_rate, "decode_snr_db": self.decode_snr_db,
            "back_snr_db": self.back_snr_db, "batch_invariant": self.batch_invariant,
            "lengths": self.lengths,
        }  # fmt: skip

    def summary(self) -> str:
        """One line for the command's report."""
        agree = 100 * (1 - self.mismatch_rate)
        worst = min([*self.decode_snr_db.values(), *self.back_snr_db.values()], default=math.nan)
        batch = {None: "", True: "; batch-invariant", False: "; NOT batch-invariant"}
        return (
            f"{self.clips} clips: codes {agree:.3f} % equal to escx's ({self.mismatched:,} of "
            f"{self.codes:,} differ); decoded audio >= {worst:.1f} dB SNR against escx's at "
            f"every bitrate{batch[self.batch_invariant]}"
        )


def _min(table: dict[int, float], key: int, value: float) -> None:
    if not math.isnan(value):
        table[key] = min(table.get(key, math.inf), value)


def compare(codec, onnx: OnnxCodec, clips: list[np.ndarray]) -> Equality:
    """Compare an export with escx's codec on ``clips``.

    Args:
        codec: escx's codec (eval mode; its default inference path is the reference).
        onnx: the exported graphs.
        clips: 1-D float32 clips at the codec's sample rate.

    Returns:
        :class:`Equality`.
    """
    result = Equality()
    codec = codec.eval()
    for clip in clips:
        audio = torch.from_numpy(np.asarray(clip, np.float32))[None]
        length = audio.shape[-1]
        with torch.inference_mode():
            ours = codec.encode(audio, codec.max_streams).numpy()
        theirs = onnx.encode(audio.numpy())
        result.clips += 1
        result.lengths.append(length)
        result.codes += ours.size
        result.mismatched += (
            int(np.sum(ours != theirs)) if ours.shape == theirs.shape else ours.size
        )
        for k in range(1, codec.max_streams + 1):
            with torch.inference_mode():
                reference = codec.decode(torch.from_numpy(ours[:, :k]), length).numpy()
                back = codec.decode(torch.from_numpy(theirs[:, :k]), length).numpy()
            _min(result.decode_snr_db, k, snr_db(reference, onnx.decode(ours[:, :k], length)))
            _min(result.back_snr_db, k, snr_db(onnx.decode(theirs[:, :k], length), back))
    if len(clips) >= 2:
        shortest = min(len(c) for c in clips)
        batch = np.stack([np.asarray(c[:shortest], np.float32) for c in clips])
        together = onnx.encode(batch)
        alone = np.concatenate([onnx.encode(row[None]) for row in batch])
        result.batch_invariant = bool(np.array_equal(together, alone))
    return result


def probe_signal(length: int, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A deterministic voiced-like signal (gliding harmonics, a little noise), float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / sample_rate
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    audio = 0.15 * tone * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.005 * rng.standard_normal(
        length
    )
    return audio.astype(np.float32)


# Lengths of the self-check after an export: under one frame, one window plus a sample, an odd
# number of frames, and 2 s (the graphs pad differently for each).
SELF_CHECK_LENGTHS = (200, 641, 320 * 7 + 5, 32000)


def self_check(codec, onnx: OnnxCodec) -> Equality:
    """:func:`compare` on deterministic test signals of :data:`SELF_CHECK_LENGTHS`."""
    rate = int(codec.sample_rate)
    return compare(codec, onnx, [probe_signal(n, rate, seed=n) for n in SELF_CHECK_LENGTHS])
