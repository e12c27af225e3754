"""Bottleneck quantizers: residual VQ (SoundStream / EnCodec / ESC's RVQ ablation) and product VQ.

Both quantize only the coarsest encoder map and then run the decoder unchanged.
"""

from __future__ import annotations

from torch import Tensor

from escx.backbones.base import Decoder, FeatureShape
from escx.quantizers.base import (
    QUANTIZERS,
    Quantizer,
    QuantizerOutput,
    from_frames,
    to_frames,
)
from escx.quantizers.product import ProductQuantizer


@QUANTIZERS.register
class ResidualVQ(Quantizer):
    """Residual VQ at the bottleneck; each stage is one stream (ESC.md 1.8 with groups=3).

    With ``groups=1`` this is the residual VQ of SoundStream and EnCodec; ``codebook_init``,
    ``ema_decay`` and ``dead_threshold`` select their codebook-learning techniques.

    Args:
        n_streams: residual stages (streams).
        groups: product groups per stage (3 in ESC).
        codebook_dim: down-projected dimension shared by the stages of a group.
        codebook_size: entries per codebook.
        frames_per_code: time patches stacked into one code frame (2 -> 50 frames/s in ESC).
        l2norm: cosine-similarity lookup.
        codebook_init: "kaiming" or "kmeans".
        ema_decay: EMA codeword updates (None: gradient-learned with the codebook loss).
        dead_threshold: restart entries used less than this many times per batch (EMA).
    """

    def __init__(
        self,
        n_streams: int = 6,
        groups: int = 3,
        codebook_dim: int = 8,
        codebook_size: int = 1024,
        frames_per_code: int = 2,
        l2norm: bool = True,
        codebook_init: str = "kaiming",
        ema_decay: float | None = None,
        dead_threshold: float = 0.0,
    ) -> None:
        super().__init__()
        self.max_streams, self.num_groups = n_streams, groups
        self.codebook_size, self.codebook_dim = codebook_size, codebook_dim
        self.frames_per_code = frames_per_code
        self.codebook_options = {
            "l2norm": l2norm,
            "init": codebook_init,
            "ema_decay": ema_decay,
            "dead_threshold": dead_threshold,
        }

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
            self.codebook_size,
            self.codebook_options,
        )

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
    """Single-stream product VQ at the bottleneck (3 groups over 2 stacked frames in ESC)."""

    def __init__(
        self,
        groups: int = 3,
        codebook_dim: int = 8,
        codebook_size: int = 1024,
        frames_per_code: int = 2,
        l2norm: bool = True,
        codebook_init: str = "kaiming",
        ema_decay: float | None = None,
        dead_threshold: float = 0.0,
    ) -> None:
        super().__init__(
            1,
            groups,
            codebook_dim,
            codebook_size,
            frames_per_code,
            l2norm,
            codebook_init,
            ema_decay,
            dead_threshold,
        )
