"""Bottleneck quantizers: product residual VQ (ESC's RVQ ablation), product VQ, and the plain
residual VQ of SoundStream / EnCodec.

All quantize only the coarsest encoder map and then run the decoder unchanged. Codebook learning
(``codebook_init``, ``ema_decay``, ``dead_threshold``, ...) is configured the same way on every
quantizer; see :class:`~escx.quantizers.codebook.VQ`. So is the codebook kind in every slot
(``codebook``, ``codebook_args``; :mod:`escx.quantizers.kinds`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from escx.backbones.base import Decoder, FeatureShape
from escx.quantizers.base import (
    QUANTIZERS,
    Quantizer,
    QuantizerOutput,
    from_frames,
    to_frames,
)
from escx.quantizers.kinds import CodebookKind, codebook_spec
from escx.quantizers.product import ProductQuantizer


@QUANTIZERS.register
class ResidualVQ(Quantizer):
    """Residual VQ at the bottleneck; each stage is one stream (docs/esc.md §9.1 with groups=3).

    Args:
        n_streams: residual stages (streams).
        groups: product groups per stage (3 in ESC).
        codebook_dim: down-projected dimension shared by the stages of a group.
        codebook_size: entries per codebook.
        frames_per_code: time patches stacked into one code frame (2 -> 50 frames/s in ESC).
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
        codebook: codebook kind in every codebook slot (``escx list codebook``): "VQ" (ESC's),
            "FSQ", "LFQ", "SimVQ" or a plug-in's. k-means, EMA and restarts need a learned
            codebook (VQ).
        codebook_args: the kind's own options, e.g. ``{levels: [8, 5, 5, 5]}`` for FSQ,
            ``{bits: 10, spherical: true}`` for LFQ, ``{estimator: rotation}`` for VQ / SimVQ.
            FSQ and LFQ set the code count and width themselves (codebook_size and codebook_dim
            then only count streams).
    """

    # Bias-free Linear projections around the codebooks (ESC); PlainRVQ quantizes full vectors.
    project = True

    def __init__(
        self,
        n_streams: int = 6,
        groups: int = 3,
        codebook_dim: int = 8,
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
        self.max_streams, self.num_groups = n_streams, groups
        self.codebook_size, self.codebook_dim = codebook_size, codebook_dim
        self.frames_per_code = frames_per_code
        self.codebook_spec = codebook_spec(
            codebook, codebook_size, codebook_args, l2norm, init=codebook_init,
            kmeans_iters=kmeans_iters, kmeans_batches=kmeans_batches, ema_decay=ema_decay,
            ema_epsilon=ema_epsilon, dead_threshold=dead_threshold, usage_decay=usage_decay,
        )  # fmt: skip
        self.codebook_size = self.codebook_spec.size

    def build(self, encoder_shapes: list[FeatureShape], decoder_shapes: list[FeatureShape]) -> None:
        self.shape = encoder_shapes[-1]
        if decoder_shapes and tuple(decoder_shapes[0]) != tuple(self.shape):
            raise ValueError(
                f"encoder bottleneck {tuple(self.shape)} does not match the decoder input "
                f"{tuple(decoder_shapes[0])} (channels, rows); align the backbone dims"
            )
        dim = self.frames_per_code * self.shape.channels * self.shape.rows
        self.pq = ProductQuantizer(
            dim,
            self.num_groups,
            self.max_streams,
            self.codebook_dim,
            self.codebook_spec,
            project=self.project,
        )

    def codebooks_by_stream(self) -> list[list[CodebookKind]]:
        return self.pq.codebooks_by_stage() if self._bound else []

    def forward(
        self, feats: list[Tensor], decoder: Decoder, n_streams: int, bypass: bool = False
    ) -> tuple[Tensor, QuantizerOutput]:
        n_streams = self.max_streams if bypass else self.check_streams(n_streams)
        v = to_frames(feats[-1], self.frames_per_code)
        v_q, codes, commit, codebook = self.pq(v, n_streams, bypass)
        z = from_frames(v_q, self.shape, self.frames_per_code)
        losses = {"commit": commit.mean(), "codebook": codebook.mean()}
        return decoder(z), QuantizerOutput(codes, losses)

    def encode(self, feats: list[Tensor], decoder: Decoder, n_streams: int) -> Tensor:
        v = to_frames(feats[-1], self.frames_per_code)
        return self.pq.encode(v, self.check_streams(n_streams))

    def decode(self, codes: Tensor, decoder: Decoder) -> Tensor:
        self.check_streams(codes.shape[1])
        z = from_frames(self.pq.decode(codes), self.shape, self.frames_per_code)
        return decoder(z)


@QUANTIZERS.register
class ProductVQ(ResidualVQ):
    """Single-stream product VQ at the bottleneck (3 groups over 2 stacked frames in ESC).

    Args: as :class:`ResidualVQ`, with one stream.
    """

    def __init__(
        self,
        groups: int = 3,
        codebook_dim: int = 8,
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
        super().__init__(
            n_streams=1,
            groups=groups,
            codebook_dim=codebook_dim,
            codebook_size=codebook_size,
            frames_per_code=frames_per_code,
            l2norm=l2norm,
            codebook_init=codebook_init,
            kmeans_iters=kmeans_iters,
            kmeans_batches=kmeans_batches,
            ema_decay=ema_decay,
            ema_epsilon=ema_epsilon,
            dead_threshold=dead_threshold,
            usage_decay=usage_decay,
            codebook=codebook,
            codebook_args=codebook_args,
        )


@QUANTIZERS.register
class PlainRVQ(ResidualVQ):
    """SoundStream/EnCodec residual VQ: one full-width codebook per stage, no projections.

    Each stage quantizes the whole code-frame vector of the bottleneck (frames_per_code x C x H:
    1536 dims for ESC-Base) with one codebook, so a stream carries log2(codebook_size) bits per
    code frame: 0.5 kbps at ESC's 50 frames/s, and 18 stages reach ESC's 9 kbps. Pre-training
    (bypass) passes the bottleneck through unchanged, as there are no projections to train.

    Args:
        n_streams: residual stages (streams), coarse first.
        codebook_size: entries per codebook.
        frames_per_code: time patches stacked into one code frame.
        l2norm: cosine-similarity lookup; False (default): Euclidean, as SoundStream/EnCodec.
        codebook_init, kmeans_iters, kmeans_batches, ema_decay, ema_epsilon, dead_threshold,
            usage_decay, codebook, codebook_args:
            codebook learning and kind, as in :class:`ResidualVQ`. A kind with its own width
            (FSQ, LFQ) gets one shared projection pair around its stages.
    """

    project = False

    def __init__(
        self,
        n_streams: int = 18,
        codebook_size: int = 1024,
        frames_per_code: int = 2,
        l2norm: bool = False,
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
        super().__init__(
            n_streams=n_streams,
            groups=1,
            codebook_dim=0,  # set by the bottleneck width at bind time
            codebook_size=codebook_size,
            frames_per_code=frames_per_code,
            l2norm=l2norm,
            codebook_init=codebook_init,
            kmeans_iters=kmeans_iters,
            kmeans_batches=kmeans_batches,
            ema_decay=ema_decay,
            ema_epsilon=ema_epsilon,
            dead_threshold=dead_threshold,
            usage_decay=usage_decay,
            codebook=codebook,
            codebook_args=codebook_args,
        )

    def build(self, encoder_shapes: list[FeatureShape], decoder_shapes: list[FeatureShape]) -> None:
        shape = encoder_shapes[-1]
        self.codebook_dim = self.frames_per_code * shape.channels * shape.rows
        super().build(encoder_shapes, decoder_shapes)
