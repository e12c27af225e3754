"""Evaluation metrics: speech quality (PESQ, STOI, SI-SDR, mel distance) and codebook usage.

All are torchmetrics ``Metric`` subclasses with summed states, so they are correct under DDP.
"""

from escx.metrics.audio import (
    PESQ_WB_MIN,
    SISDR,
    STOI,
    ClipAverageMetric,
    MelDistance,
    PESQWideband,
    speech_quality_metrics,
)
from escx.metrics.codebook import CodebookUsage

__all__ = [
    "PESQ_WB_MIN",
    "SISDR",
    "STOI",
    "ClipAverageMetric",
    "CodebookUsage",
    "MelDistance",
    "PESQWideband",
    "speech_quality_metrics",
]
