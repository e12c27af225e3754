"""Evaluation metrics: speech quality (PESQ, STOI, SI-SDR, mel distance), model-based quality
(DNSMOS, ViSQOL, speaker similarity; optional ``eval`` extra) and codebook usage.

All are torchmetrics ``Metric`` subclasses with summed states, so they are correct under DDP. The
model-based metric classes import their packages only when they score, so importing this module
works without the extra.
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
from escx.metrics.dnsmos import DNSMOS
from escx.metrics.models import missing_model_columns, model_quality_metrics
from escx.metrics.speaker import SpeakerSimilarity
from escx.metrics.visqol import ViSQOL

__all__ = [
    "DNSMOS",
    "PESQ_WB_MIN",
    "SISDR",
    "STOI",
    "ClipAverageMetric",
    "CodebookUsage",
    "MelDistance",
    "PESQWideband",
    "SpeakerSimilarity",
    "ViSQOL",
    "missing_model_columns",
    "model_quality_metrics",
    "speech_quality_metrics",
]
