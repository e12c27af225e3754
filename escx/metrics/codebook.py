"""Codebook usage statistics of a multi-stream, multi-group quantizer.

One histogram of code counts per (stream, group) codebook is accumulated over a data set; the
statistics are computed from the histogram, so they describe the whole set, not a batch mean. This
is how ESC measures its "bitrate utilisation" (docs/esc.md §14): the entropy in bits of each
codebook's histogram, summed over the ``s x G`` codebooks used at ``s`` streams and divided by
``s * G * log2(K)``; the effective bitrate is about utilisation x nominal bitrate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric


class CodebookUsage(Metric):
    """Histogram-based codebook statistics, DDP-safe (the histogram is summed over ranks).

    ``compute()`` returns, for each stream ``i`` and group ``j`` that received codes (1-based keys
    ``s{i}g{j}/...``):

    * ``usage``: fraction of the ``K`` entries used at least once;
    * ``perplexity``: ``exp`` of the entropy in nats (``K`` for uniform use, 1 for one code);
    * ``utilization``: entropy in bits / ``log2(K)``, ESC's per-codebook ratio, in [0, 1];
    * ``dead``: number of entries never used;

    the means of these over all codebooks of the streams that received codes (keys ``usage``,
    ``perplexity``, ``utilization``, ``dead``), and ``bitrate_utilization``: ESC's ratio over
    streams 1..s, with s the highest stream that received codes (streams without codes add
    entropy 0, as they would cost bits without carrying any).

    Args:
        num_streams: streams of the quantizer (ESC: 6).
        num_groups: product-VQ groups per stream (ESC: 3; 1 for a plain RVQ).
        codebook_size: entries per codebook ``K`` (ESC: 1024).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, num_streams: int, num_groups: int, codebook_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if min(num_streams, num_groups) < 1 or codebook_size < 2:
            raise ValueError(
                "CodebookUsage needs num_streams >= 1, num_groups >= 1 and codebook_size >= 2, "
                f"got {num_streams}, {num_groups}, {codebook_size}"
            )
        self.num_streams = num_streams
        self.num_groups = num_groups
        self.codebook_size = codebook_size
        # int64 counts: exact under any number of updates and ranks.
        self.add_state(
            "counts",
            torch.zeros(num_streams, num_groups, codebook_size, dtype=torch.long),
            dist_reduce_fx="sum",
        )

    def update(self, codes: Tensor) -> None:
        """Count a batch of codes.

        Args:
            codes: integer codes ``(B, S, G, T)`` for the first ``S <= num_streams`` streams
                (fewer streams at lower bitrates); values in ``[0, codebook_size)``.
        """
        if codes.dim() != 4 or codes.is_floating_point() or codes.is_complex():
            raise ValueError(
                f"CodebookUsage.update expects integer codes of shape (B, S, G, T), got "
                f"{codes.dtype} {tuple(codes.shape)}"
            )
        _, streams, groups, _ = codes.shape
        if streams > self.num_streams or groups != self.num_groups:
            raise ValueError(
                f"CodebookUsage was built for {self.num_streams} streams x {self.num_groups} "
                f"groups, got codes with {streams} streams x {groups} groups; match num_streams "
                "and num_groups to the quantizer"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(
                f"CodebookUsage got codes in [{int(codes.min())}, {int(codes.max())}], outside "
                f"[0, {self.codebook_size}); check codebook_size"
            )
        codes = codes.to(self.counts.device, torch.long)
        k = self.codebook_size
        # Give each (stream, group) its own range of K bins, then count all codes in one bincount.
        offsets = torch.arange(streams * groups, device=codes.device).view(1, streams, groups, 1)
        flat = (codes + offsets * k).flatten()
        hist = torch.bincount(flat, minlength=streams * groups * k)
        self.counts[:streams] += hist.view(streams, groups, k)

    def _histogram(self) -> Tensor:
        return self.counts.clone()

    def histogram(self) -> Tensor:
        """Code counts ``(num_streams, num_groups, codebook_size)``, summed over DDP ranks."""
        if self._is_synced:
            return self._histogram()
        with self.sync_context():
            return self._histogram()

    def bitrate_utilization(self, n_streams: int) -> Tensor:
        """ESC's bitrate utilisation of streams ``1..n_streams``: sum of entropies in bits over
        their ``n_streams * G`` codebooks divided by ``n_streams * G * log2(K)``."""
        if not 1 <= n_streams <= self.num_streams:
            raise ValueError(f"n_streams must be in [1, {self.num_streams}], got {n_streams}")
        entropy = _entropy_nats(self.histogram()[:n_streams])
        return (entropy.mean() / math.log(self.codebook_size)).float()

    def compute(self) -> dict[str, Tensor]:
        """Per-codebook and mean statistics (see the class docstring)."""
        counts = self._histogram()
        device = counts.device
        k = self.codebook_size
        entropy = _entropy_nats(counts)  # (S, G), float64 on CPU
        used = (counts > 0).cpu()
        stats = {
            "usage": used.double().mean(-1),
            "perplexity": entropy.exp(),
            "utilization": entropy / math.log(k),
            "dead": (k - used.sum(-1)).double(),
        }
        seen = counts.sum(dim=(1, 2)).cpu() > 0  # streams that received codes
        out: dict[str, Tensor] = {}
        for s in torch.nonzero(seen).flatten().tolist():
            for g in range(self.num_groups):
                for name, values in stats.items():
                    out[f"s{s + 1}g{g + 1}/{name}"] = values[s, g]
        for name, values in stats.items():
            out[name] = values[seen].mean() if seen.any() else torch.tensor(math.nan)
        top = int(torch.nonzero(seen).max()) + 1 if seen.any() else 0
        out["bitrate_utilization"] = (
            entropy[:top].mean() / math.log(k) if top else torch.tensor(math.nan)
        )
        return {key: value.float().to(device) for key, value in out.items()}


def _entropy_nats(counts: Tensor) -> Tensor:
    """Entropy in nats of each histogram along the last dim (0 for an empty histogram)."""
    counts = counts.detach().cpu().double()  # float64 on CPU: exact enough, works for any device
    total = counts.sum(-1, keepdim=True)
    p = counts / total.clamp(min=1)
    # sum p log(1/p), with xlogy's 0 log(.) = 0 for unused entries (and no -0.0 for one code).
    return torch.special.xlogy(p, 1.0 / p).sum(-1)
