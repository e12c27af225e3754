"""Several clip metrics averaged over one and the same set of clips.

Each clip metric drops the clips it cannot score (PESQ a silent output, STOI a clip too short for
its frames, ViSQOL one too short for a patch...). Averaged separately, one row of a report would
then hold PESQ over two clips and STOI over three. :class:`SameClipMetrics` keeps every clip's
scores and averages each metric over the clips that every metric scored, so the numbers of a row
describe the same audio; per metric it counts the clips it could not score.

A metric that scored no clip at all is left out of that intersection (its value is NaN), so one
metric that cannot work on a data set (STOI on clips under a second) does not empty the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat, rank_zero_warn

from escx.metrics.audio import ClipAverageMetric, speech_clip_metrics


@dataclass(frozen=True)
class ClipSummary:
    """What one evaluation row reports.

    Attributes:
        means: mean of each score over the common clips (NaN where undefined), by score name.
        dropped: per metric, the clips it could not score (silent or too short audio).
        clips: clips in the means (every metric with a value scored each of them).
        total: clips received.
    """

    means: dict[str, float]
    dropped: dict[str, int]
    clips: int
    total: int


class SameClipMetrics(Metric):
    """Means of several :class:`ClipAverageMetric` scores over the clips all of them scored.

    Every clip's scores are kept (one row of floats per clip; a list state concatenated across
    DDP ranks), so the common set is decided once all clips are in, on every rank alike.
    ``compute()`` returns ``{score name: mean}`` like a ``MetricCollection`` of the metrics;
    :meth:`summary` adds the per-metric dropped counts and the clip count.

    A clip with NaN or Inf samples makes every mean NaN (a diverged model shows up instead of
    being averaged away), as in :class:`ClipAverageMetric`.

    Args:
        metrics: the clip metrics by key (``pesq``, ``dnsmos``...); their own states stay unused.
            A metric with ``score_names`` contributes one score per name, the others one score
            named by their key.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, metrics: Mapping[str, ClipAverageMetric], **kwargs) -> None:
        super().__init__(**kwargs)
        if not metrics:
            raise ValueError("SameClipMetrics needs at least one metric")
        self.scorers = nn.ModuleDict(dict(metrics))
        self.score_names: list[str] = []
        self.columns: dict[str, list[int]] = {}  # metric key -> its score columns
        for key, metric in metrics.items():
            names = list(metric.score_names) or [key]
            start = len(self.score_names)
            self.columns[key] = list(range(start, start + len(names)))
            self.score_names += names
        # One flat float32 vector per batch: each clip's scores, then 1.0 for non-finite audio.
        # Flat, because DDP gives a rank without clips an empty 1-D tensor to concatenate.
        self.add_state("table", [], dist_reduce_fx="cat")

    @property
    def width(self) -> int:
        """Floats per clip in the table: every score and the non-finite flag."""
        return len(self.score_names) + 1

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Score a batch of clips, ``(B, L)`` (or ``(L,)``) predictions and references."""
        parts, finite = [], None
        for metric in self.scorers.values():
            scores, finite = metric.score(preds, target)
            parts.append(scores)
        flags = (~finite).float()[:, None]
        self.table.append(torch.cat([*parts, flags], dim=1).flatten().to(self.device))

    def _rows(self) -> Tensor:
        table = dim_zero_cat(self.table) if isinstance(self.table, list) else self.table
        if table.numel() == 0:
            return torch.zeros(0, self.width)
        return table.detach().float().cpu().view(-1, self.width)

    def _summarise(self) -> ClipSummary:
        rows = self._rows()
        scores, poisoned = rows[:, :-1], rows[:, -1] > 0
        valid = ~torch.isnan(scores)
        scored = {k: valid[:, cols].all(-1) & ~poisoned for k, cols in self.columns.items()}
        dropped = {k: int((~ok & ~poisoned).sum()) for k, ok in scored.items()}
        active = [k for k, ok in scored.items() if ok.any()]
        keep = ~poisoned
        for key in active:
            keep &= scored[key]
        means = torch.full((len(self.score_names),), math.nan)
        if keep.any():
            columns = [c for key in active for c in self.columns[key]]
            means[columns] = scores[keep][:, columns].double().mean(0).float()
        if poisoned.any():
            means[:] = math.nan
        return ClipSummary(
            means=dict(zip(self.score_names, means.tolist(), strict=True)),
            dropped=dropped,
            clips=int(keep.sum()),
            total=rows.shape[0],
        )

    def compute(self) -> dict[str, Tensor]:
        """Mean of each score over the common clips, by score name (NaN where undefined)."""
        summary = self._summarise()
        if any(summary.dropped.values()):
            counts = ", ".join(f"{k} {n}" for k, n in summary.dropped.items() if n)
            rank_zero_warn(
                f"quality metrics use {summary.clips} of {summary.total} clips; clips some metric "
                f"cannot score (silent or too short) are left out of all: {counts}"
            )
        return {k: torch.tensor(v) for k, v in summary.means.items()}

    def summary(self) -> ClipSummary:
        """Means, per-metric dropped counts and clip counts (synchronised across DDP ranks)."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return self._summarise()


def speech_quality_metrics(sample_rate: int = 16000, with_stoi: bool = True) -> SameClipMetrics:
    """The ESC evaluation set over common clips: PESQ, mel distance, SI-SDR, STOI and ESTOI.

    Keys of ``compute()`` are ``pesq``, ``mel_distance``, ``sisdr``, ``stoi`` and ``estoi``
    (the last two unless ``with_stoi`` is False).
    """
    return SameClipMetrics(speech_clip_metrics(sample_rate, with_stoi))
