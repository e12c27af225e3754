"""Evaluation metrics: speech quality (PESQ, STOI, ESTOI, SI-SDR, mel distance), model-based
quality (DNSMOS, ViSQOL, speaker similarity; optional ``eval`` extra) and codebook usage.

All are torchmetrics ``Metric`` subclasses whose states are sums or per-clip lists, so they are
correct under DDP. :class:`SameClipMetrics` averages several clip metrics over the clips that all
of them can score. The model-based metric classes import their packages only when they score, so
importing this module works without the extra.
"""

from escx.metrics.audio import (
    SISDR,
    STOI,
    ClipAverageMetric,
    MelDistance,
    PESQWideband,
    si_sdr,
    speech_clip_metrics,
)
from escx.metrics.codebook import CodebookUsage
from escx.metrics.dnsmos import DNSMOS
from escx.metrics.models import missing_model_columns, model_quality_metrics
from escx.metrics.same_clips import ClipSummary, SameClipMetrics, speech_quality_metrics
from escx.metrics.speaker import SpeakerSimilarity
from escx.metrics.visqol import ViSQOL

__all__ = [
    "DNSMOS",
    "SISDR",
    "STOI",
    "ClipAverageMetric",
    "ClipSummary",
    "CodebookUsage",
    "MelDistance",
    "PESQWideband",
    "SameClipMetrics",
    "SpeakerSimilarity",
    "ViSQOL",
    "missing_model_columns",
    "model_quality_metrics",
    "si_sdr",
    "speech_clip_metrics",
    "speech_quality_metrics",
]
