"""What int8 costs: PESQ, STOI and SI-SDR of the int8 graphs against the fp32 graphs, per bitrate.

Each clip is coded end to end by each variant (its encoder, then its decoder at every stream
count) and scored against the input. Only meaningful for a trained codec: an untrained one scores
PESQ about 1 either way.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from escx.export.runtime import OnnxCodec


def _scores(reference: np.ndarray, decoded: np.ndarray, rate: int) -> dict[str, float]:
    from escx.metrics.audio import STOI, PESQWideband, si_sdr

    ref, deg = torch.from_numpy(reference[None]), torch.from_numpy(decoded[None])
    return {
        "pesq": float(PESQWideband(rate).clip_scores(deg, ref)[0]),
        "stoi": float(STOI(rate).clip_scores(deg, ref)[0]),
        "si_sdr": float(si_sdr(deg, ref)[0]),
    }


def _mean(values: list[float]) -> float | None:
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def int8_cost(fp32: OnnxCodec, int8: OnnxCodec, clips: list[np.ndarray]) -> list[dict[str, Any]]:
    """Mean scores of both variants per bitrate, and the int8 variant's changes.

    Args:
        fp32, int8: the two variants of one export.
        clips: 1-D float32 clips at the export's sample rate.

    Returns:
        One row per bitrate: ``kbps``, ``streams``, ``{metric}_fp32``, ``{metric}_int8`` and
        ``{metric}_change`` (int8 minus fp32) for pesq, stoi and si_sdr, and ``clips``.
    """
    rate = fp32.sample_rate
    scores: dict[tuple[str, int], list[dict[str, float]]] = {}
    for clip in clips:
        audio = np.asarray(clip, np.float32)[None]
        for name, variant in (("fp32", fp32), ("int8", int8)):
            codes = variant.encode(audio)
            for entry in fp32.description["bitrates"]:
                k = int(entry["streams"])
                decoded = variant.decode(codes[:, :k], audio.shape[-1])[0]
                scores.setdefault((name, k), []).append(_scores(audio[0], decoded, rate))
    rows = []
    for entry in fp32.description["bitrates"]:
        k = int(entry["streams"])
        row: dict[str, Any] = {"kbps": entry["kbps"], "streams": k, "clips": len(clips)}
        for metric in ("pesq", "stoi", "si_sdr"):
            for name in ("fp32", "int8"):
                row[f"{metric}_{name}"] = _mean([s[metric] for s in scores[(name, k)]])
            a, b = row[f"{metric}_fp32"], row[f"{metric}_int8"]
            row[f"{metric}_change"] = None if a is None or b is None else b - a
        rows.append(row)
    return rows


def cost_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`int8_cost` as a Markdown table."""

    def cell(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = [
        "| kbps | PESQ fp32 | PESQ int8 | STOI fp32 | STOI int8 | SI-SDR fp32 | SI-SDR int8 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kbps']:g} | {cell(r['pesq_fp32'], 3)} | {cell(r['pesq_int8'], 3)} | "
            f"{cell(r['stoi_fp32'], 3)} | {cell(r['stoi_int8'], 3)} | "
            f"{cell(r['si_sdr_fp32'], 2)} | {cell(r['si_sdr_int8'], 2)} |"
        )
    return "\n".join(lines)
