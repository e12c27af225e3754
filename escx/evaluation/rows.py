"""What every evaluation row shares, whichever codec made it: clips in, quality columns out.

:func:`quality_metrics` builds the per-row metric set (signal metrics, and the model-based ones
that are installed) averaged over the clips all of them can score; :func:`quality_fields` turns
it into the row's columns (means, ``clips_scored`` and ``dropped`` per metric).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from torch import Tensor

from escx.metrics import SameClipMetrics, model_quality_metrics, speech_clip_metrics
from escx.metrics.models import MODEL_COLUMNS

logger = logging.getLogger(__name__)

Clip = str | os.PathLike | Tensor
# listen(clip index, clip name, column (a stream count or a label) or None for the original,
# audio (L,))
ClipSink = Callable[[int, str, Any, Tensor], None]

# Row keys of the signal metrics, in report order (the model-based ones follow).
SIGNAL_COLUMNS = ("pesq", "stoi", "estoi", "sisdr", "mel_distance")


def quality_metrics(sample_rate: int, with_stoi: bool, with_models: bool) -> SameClipMetrics:
    """The metrics of one row: PESQ, mel distance, SI-SDR, (E)STOI and the installed model
    metrics, averaged over the same clips."""
    metrics = speech_clip_metrics(sample_rate, with_stoi=with_stoi)
    if with_models:
        metrics.update(dict(model_quality_metrics(sample_rate).items()))
    return SameClipMetrics(metrics)


def _nan_to_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def quality_fields(metric: SameClipMetrics) -> dict[str, Any]:
    """A row's quality columns: each metric's mean over the common clips (None where no clip
    could be scored, or not computed), ``clips_scored`` and ``dropped`` (``{metric: clips it
    could not score}``). Model-based columns appear only when their packages are installed.
    """
    summary = metric.summary()
    fields = {k: _nan_to_none(summary.means.get(k, math.nan)) for k in SIGNAL_COLUMNS}
    fields.update({k: _nan_to_none(v) for k, v in summary.means.items() if k in MODEL_COLUMNS})
    fields["clips_scored"] = summary.clips
    fields["dropped"] = dict(summary.dropped)
    return fields


def load_clip(clip: Clip, sample_rate: int) -> tuple[Tensor, str]:
    """A clip as ``(L,)`` float audio at ``sample_rate`` and its name (``<tensor>`` for tensors).

    Raises:
        ValueError: a tensor that is not ``(L,)`` with ``L > 0``; unreadable audio files.
    """
    if isinstance(clip, Tensor):
        audio = clip.float()
        if audio.dim() != 1 or audio.numel() == 0:
            raise ValueError(f"a clip tensor must have shape (L,) with L > 0, got {audio.shape}")
        return audio, "<tensor>"
    from escx.audio import read_audio

    audio, info = read_audio(clip, sample_rate)
    if info.notice():
        logger.info(info.notice())
    return audio, str(clip)


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start
