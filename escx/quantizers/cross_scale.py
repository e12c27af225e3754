"""Cross-scale residual VQ (CS-RVQ), ESC's quantizer (docs/esc.md §8).

Stream 1 quantizes the encoder bottleneck directly. Stream k + 2 (k = 0..) quantizes the residual
between the encoder map and the decoder state at the input of decoder stage k, at the same scale
and width, and adds the quantized residual back before the stage runs::

    h_0 = Q_0(enc[-1])
    h_k <- h_k + Q_{k+1}(enc[-1-k] - h_k)     (if stream k+2 is transmitted)
    h_{k+1} = decoder.stage(k, h_k)

Untransmitted streams: in training every quantizer still runs and its output and losses are
multiplied by zero (so codes for all streams come back); in eval it is skipped. The decoder
stages always run, so decode cost does not depend on the stream count, while encoding s streams
runs s - 1 decoder stages (the "decoder in the encoder").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from escx.backbones.base import Decoder, FeatureShape
from escx.quantizers.base import (
    QUANTIZERS,
    Quantizer,
    QuantizerOutput,
    from_frames,
    to_frames,
)
from escx.quantizers.kinds import CodebookKind, CodebookSpec, codebook_spec
from escx.quantizers.product import ProductQuantizer


class ScaleQuantizer(nn.Module):
    """A product VQ for feature maps of one scale (B, C, H, W)."""

    def __init__(
        self,
        shape: FeatureShape,
        frames_per_code: int,
        groups: int,
        dim: int,
        codebook: CodebookSpec,
    ) -> None:
        super().__init__()
        self.shape, self.frames_per_code = shape, frames_per_code
        in_dim = frames_per_code * shape.channels * shape.rows
        self.pq = ProductQuantizer(in_dim, groups, 1, dim, codebook)

    def forward(self, x: Tensor, bypass: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, C, H, W) -> quantized map, codes (B, groups, T), per-sample losses (B,)."""
        v_q, codes, commit, codebook = self.pq(to_frames(x, self.frames_per_code), 1, bypass)
        return from_frames(v_q, self.shape, self.frames_per_code), codes[:, 0:1], commit, codebook

    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> codes (B, groups, T)."""
        return self.pq.encode(to_frames(x, self.frames_per_code), 1)[:, 0]

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, groups, T) -> (B, C, H, W)."""
        return from_frames(self.pq.decode(codes[:, None]), self.shape, self.frames_per_code)


@QUANTIZERS.register
class CrossScaleRVQ(Quantizer):
    """ESC's cross-scale residual VQ: one product VQ per decoder scale, coarse to fine.

    Args:
        codebook_dims: down-projected dimension per stream; its length is the stream count
            (ESC-Base/Large: 8 x 6; the shipped ``9kbps_esc_base.yaml``: 32,32,16,12,8,6).
        groups: product groups per stream (3).
        codebook_size: entries per codebook (1024).
        frames_per_code: time patches stacked into one code frame (2).
        l2norm: cosine-similarity lookup (ESC) instead of Euclidean distance.
        codebook_init: "kaiming" (ESC) or "kmeans" (k-means++ and Lloyd on the first quantized
            batches, pooled over DDP ranks).
        kmeans_iters: Lloyd iterations of the k-means initialisation.
        kmeans_batches: first quantized batches whose vectors k-means clusters (pooled).
        ema_decay: EMA codeword updates, e.g. 0.99 (None: learned by the codebook loss, ESC).
        ema_epsilon: Laplace smoothing of the EMA counts.
        dead_threshold: restart entries used less than this fraction of uniform usage, e.g. 0.1
            (0: never, ESC).
        usage_decay: decay of the usage EMA behind ``dead_threshold``.
        codebook, codebook_args: the codebook kind in every slot and its options, as in
            :class:`~escx.quantizers.residual.ResidualVQ` (``escx list codebook``).
    """

    def __init__(
        self,
        codebook_dims: Sequence[int] = (8, 8, 8, 8, 8, 8),
        groups: int = 3,
        codebook_size: int = 1024,
        frames_per_code: int = 2,
        l2norm: bool = True,
        codebook_init: str = "kaiming",
        kmeans_iters: int = 10,
        kmeans_batches: int = 1,
        ema_decay: float | None = None,
        ema_epsilon: float = 1e-5,
        dead_threshold: float = 0.0,
        usage_decay: float = 0.99,
        codebook: str = "VQ",
        codebook_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.codebook_dims = list(codebook_dims)
        self.max_streams, self.num_groups = len(self.codebook_dims), groups
        self.codebook_size, self.frames_per_code = codebook_size, frames_per_code
        self.codebook_spec = codebook_spec(
            codebook, codebook_size, codebook_args, l2norm, init=codebook_init,
            kmeans_iters=kmeans_iters, kmeans_batches=kmeans_batches, ema_decay=ema_decay,
            ema_epsilon=ema_epsilon, dead_threshold=dead_threshold, usage_decay=usage_decay,
        )  # fmt: skip
        self.codebook_size = self.codebook_spec.size

    def build(self, encoder_shapes: list[FeatureShape], decoder_shapes: list[FeatureShape]) -> None:
        refinements = self.max_streams - 1
        if refinements > len(decoder_shapes):
            raise ValueError(
                f"{self.max_streams} streams need {refinements} decoder stages, the decoder has "
                f"{len(decoder_shapes)}; use at most {len(decoder_shapes) + 1} codebook_dims"
            )
        shapes = [FeatureShape(*encoder_shapes[-1])]
        for k in range(refinements):
            enc, dec = tuple(encoder_shapes[-1 - k]), tuple(decoder_shapes[k])
            if enc != dec:
                raise ValueError(
                    f"cross-scale stream {k + 2} pairs encoder map {enc} with decoder stage {k} "
                    f"input {dec} (channels, rows); they must match: align the backbone dims"
                )
            shapes.append(FeatureShape(*dec))
        self.scales = nn.ModuleList(
            ScaleQuantizer(
                s,
                self.frames_per_code,
                self.num_groups,
                d,
                self.codebook_spec,
            )
            for s, d in zip(shapes, self.codebook_dims, strict=True)
        )

    def codebooks_by_stream(self) -> list[list[CodebookKind]]:
        return [scale.pq.codebooks_by_stage()[0] for scale in self.scales] if self._bound else []

    def forward(
        self, feats: list[Tensor], decoder: Decoder, n_streams: int, bypass: bool = False
    ) -> tuple[Tensor, QuantizerOutput]:
        n_streams = self.max_streams if bypass else self.check_streams(n_streams)
        z0, code, commit, codebook = self.scales[0](feats[-1], bypass)
        codes = [code]
        losses = [(commit, codebook)]

        def refine(stage: int, h: Tensor) -> Tensor:
            stream = stage + 1  # 0-based index of the quantizer used at this stage
            if stream >= self.max_streams:
                return h
            transmitted = stream < n_streams
            if not self.training and not transmitted:
                return h
            r_q, c, c_loss, b_loss = self.scales[stream](feats[-1 - stage] - h, bypass)
            codes.append(c)
            if not transmitted:  # training: run but mask, as the reference does
                return h
            losses.append((c_loss, b_loss))
            return h + r_q

        spec = decoder(z0, refine)
        commit = torch.stack([c for c, _ in losses]).sum(0).mean()
        codebook = torch.stack([b for _, b in losses]).sum(0).mean()
        return spec, QuantizerOutput(
            torch.cat(codes, dim=1), {"commit": commit, "codebook": codebook}
        )

    @torch.no_grad()
    def encode(self, feats: list[Tensor], decoder: Decoder, n_streams: int) -> Tensor:
        n_streams = self.check_streams(n_streams)
        codes = [self.scales[0].encode(feats[-1])]
        h = self.scales[0].decode(codes[0])
        for stage in range(n_streams - 1):
            code = self.scales[stage + 1].encode(feats[-1 - stage] - h)
            codes.append(code)
            if len(codes) == n_streams:
                break
            h = decoder.stage(stage, h + self.scales[stage + 1].decode(code))
        return torch.stack(codes, dim=1)

    def decode(self, codes: Tensor, decoder: Decoder) -> Tensor:
        n_streams = self.check_streams(codes.shape[1])
        z0 = self.scales[0].decode(codes[:, 0])

        def refine(stage: int, h: Tensor) -> Tensor:
            if stage + 1 < n_streams:
                return h + self.scales[stage + 1].decode(codes[:, stage + 1])
            return h

        return decoder(z0, refine)
