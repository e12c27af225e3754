"""Per-bitrate evaluation metrics for validation and test (docs/esc.md §14).

Names follow ``stage/name@<kbps>kbps`` (``val/pesq@9kbps``) and ``stage/codebook/s<i>g<j>/<stat>``
for codebook health at the highest evaluated bitrate. Every value is a torchmetrics Metric, so
it is reduced across DDP ranks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from escx.codecs.base import Codec
from escx.metrics import CodebookUsage, speech_quality_metrics


def kbps_label(kbps: float) -> str:
    """1.5 -> '1.5kbps', 9.0 -> '9kbps'."""
    return f"{kbps:g}kbps"


class BitrateMetrics(nn.Module):
    """Speech-quality and codebook metrics for each evaluated bitrate.

    Args:
        codec: the codec (for stream counts and codebook geometry).
        kbps: bitrates to evaluate; each must be a whole number of streams.
        with_stoi: include STOI (slower).
    """

    def __init__(self, codec: Codec, kbps: Sequence[float], with_stoi: bool = True) -> None:
        super().__init__()
        self.streams = {kbps_label(k): codec.streams_for_kbps(k) for k in kbps}
        # ModuleDict keys cannot hold "."; index by stream count, label for logging.
        self.quality = nn.ModuleDict(
            {
                str(s): speech_quality_metrics(codec.sample_rate, with_stoi)
                for s in self.streams.values()
            }
        )
        self.codebooks = nn.ModuleDict(
            {
                str(s): CodebookUsage(codec.max_streams, codec.num_groups, codec.codebook_size)
                for s in self.streams.values()
            }
        )
        self.top = max(self.streams, key=self.streams.get) if self.streams else None

    def update(self, label: str, pred: Tensor, target: Tensor, codes: Tensor) -> None:
        """Add one batch decoded at bitrate ``label``: audio (B, L), codes (B, S, G, T)."""
        key = str(self.streams[label])
        self.quality[key].update(pred.float(), target.float())
        if codes.shape[1]:
            self.codebooks[key].update(codes)

    def compute(self, stage: str) -> dict[str, Tensor]:
        """All metric values, named for logging."""
        values: dict[str, Tensor] = {}
        for label in self.streams:
            key = str(self.streams[label])
            for name, value in self.quality[key].compute().items():
                values[f"{stage}/{name}@{label}"] = value
            usage = self.codebooks[key].compute()
            values[f"{stage}/codebook/utilization@{label}"] = usage["bitrate_utilization"]
            if label == self.top:
                for name, value in usage.items():
                    values[f"{stage}/codebook/{name}"] = value
        return {k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()}

    def histogram(self) -> Tensor | None:
        """Code histogram (S, G, K) at the highest bitrate, for the usage heatmap."""
        return self.codebooks[str(self.streams[self.top])].histogram() if self.top else None

    def reset(self) -> None:
        for collection in self.quality.values():
            collection.reset()
        for metric in self.codebooks.values():
            metric.reset()
