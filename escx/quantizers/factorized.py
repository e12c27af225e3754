"""DAC's residual VQ with factorized codes (Kumar et al. 2023, section 3.2; docs/esc.md §18).

Every stage (stream) has its own projections: a weight-normalised 1x1 convolution from the full
latent width down to ``codebook_dim`` (8), a codebook searched by cosine similarity (both sides
L2-normalised; the raw codeword is returned, as in ESC's VQ), and a 1x1 convolution back up. The
residual is taken in the full latent space, so each stage codes what the stages before it left.
One code of ``log2(codebook_size)`` bits per frame and stage: 0.5 kbps per stream at 50 frames/s.

Quantizer dropout, DAC's way: in training, the first ``floor(B * quantizer_dropout)`` samples of a
batch each use a stream count drawn uniformly from ``1..n_streams``, the others all streams. This
differs from ESC's (escx's :class:`~escx.training.module.CodecModule` draws one count per
*batch*, docs/esc.md §13.3): configs of this quantizer set the module's ``quantizer_dropout`` to
0 and this one to 0.5. The draws are a pure function of ``dropout_seed``, the number of training
batches this quantizer has seen (a buffer, so it is saved in checkpoints and resumes exactly) and
the DDP rank.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from escx.backbones.base import Decoder, FeatureShape
from escx.quantizers import sync
from escx.quantizers.base import QUANTIZERS, Quantizer, QuantizerOutput, from_frames, to_frames
from escx.quantizers.kinds import CodebookKind, codebook_spec


def _projection(c_in: int, c_out: int) -> nn.Module:
    conv = nn.Conv1d(c_in, c_out, 1)
    nn.init.zeros_(conv.bias)  # DAC's init_weights (see escx.backbones.dac.wn_conv1d)
    return weight_norm(conv)


class FactorizedStage(nn.Module):
    """One residual stage: project down, look up, project up.

    Args:
        dim: latent width D.
        codebook: the stage's codebook kind (width ``codebook.dim``).
    """

    def __init__(self, dim: int, codebook: CodebookKind) -> None:
        super().__init__()
        self.in_proj = _projection(dim, codebook.dim)
        self.codebook = codebook
        self.out_proj = _projection(codebook.dim, dim)

    def forward(self, residual: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, D, T) residual -> (quantized (B, D, T), codes (B, T), commit (B,), codebook (B,))."""
        z = self.in_proj(residual)
        # Search and VQ losses in fp32 even under autocast (cosine of 8-dim vectors).
        with torch.autocast(device_type=z.device.type, enabled=False):
            z_q, codes, commit, book = self.codebook(z.float().transpose(1, 2))
        return self._up(z_q), codes, commit, book

    def _up(self, z_q: Tensor) -> Tensor:
        # (B, T, dim) float32 codewords -> (B, D, T); autocast, if on, casts inside the conv.
        return self.out_proj(z_q.transpose(1, 2).to(self.out_proj.bias.dtype))

    def bypass(self, residual: Tensor) -> Tensor:
        """Pre-training: the projections without the codebook (an 8-dim bottleneck)."""
        return self.out_proj(self.in_proj(residual))

    def encode(self, residual: Tensor) -> Tensor:
        """(B, D, T) -> codes (B, T)."""
        z = self.in_proj(residual)
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self.codebook.encode(z.float().transpose(1, 2))

    def decode(self, codes: Tensor) -> Tensor:
        """Codes (B, T) -> (B, D, T); exactly what :meth:`forward` returns in eval."""
        with torch.autocast(device_type=codes.device.type, enabled=False):
            z_q = self.codebook.lookup(codes).float()
        return self._up(z_q)


@QUANTIZERS.register
class FactorizedRVQ(Quantizer):
    """DAC's residual VQ: per-stage low-dimensional codes, cosine lookup, per-sample dropout.

    Works as a bottleneck quantizer on any codec (each code frame's ``frames_per_code x C x H``
    vector is the latent); DAC's 16 kHz model has 12 streams of 1024 x 8.

    Args:
        n_streams: residual stages (streams), coarse first.
        codebook_size: entries per codebook.
        codebook_dim: width of the factorized codes (8 in DAC).
        frames_per_code: latent frames stacked into one code frame (1 in DAC).
        quantizer_dropout: fraction of each training batch that uses a random stream count
            (DAC: 0.5; 0: every sample uses the streams it is given).
        dropout_seed: seed of those draws.
        l2norm: cosine-similarity lookup (DAC) instead of Euclidean distance.
        codebook_init, kmeans_iters, kmeans_batches, ema_decay, ema_epsilon, dead_threshold,
            usage_decay, codebook, codebook_args: codebook learning and kind, as in
            :class:`~escx.quantizers.residual.ResidualVQ` (default: DAC's, learned by the
            codebook loss).
    """

    def __init__(
        self,
        n_streams: int = 12,
        codebook_size: int = 1024,
        codebook_dim: int = 8,
        frames_per_code: int = 1,
        quantizer_dropout: float = 0.0,
        dropout_seed: int = 0,
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
        if isinstance(n_streams, bool) or not 1 <= int(n_streams) <= 255:
            raise ValueError(f"n_streams must be between 1 and 255, got {n_streams}")
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {quantizer_dropout}")
        if int(frames_per_code) < 1 or int(codebook_dim) < 1:
            raise ValueError(
                f"frames_per_code and codebook_dim must be >= 1, got {frames_per_code} and "
                f"{codebook_dim}"
            )
        self.max_streams, self.num_groups = int(n_streams), 1
        self.codebook_dim, self.frames_per_code = int(codebook_dim), int(frames_per_code)
        self.quantizer_dropout, self.dropout_seed = float(quantizer_dropout), int(dropout_seed)
        self.codebook_spec = codebook_spec(
            codebook, codebook_size, codebook_args, l2norm, init=codebook_init,
            kmeans_iters=kmeans_iters, kmeans_batches=kmeans_batches, ema_decay=ema_decay,
            ema_epsilon=ema_epsilon, dead_threshold=dead_threshold, usage_decay=usage_decay,
        )  # fmt: skip
        self.codebook_size = self.codebook_spec.size
        # Training batches seen by the dropout draws: saved with the weights, so a resumed run
        # draws what the interrupted one would have.
        self.register_buffer("dropout_batches", torch.zeros((), dtype=torch.long))

    def build(self, encoder_shapes: list[FeatureShape], decoder_shapes: list[FeatureShape]) -> None:
        self.shape = encoder_shapes[-1]
        if decoder_shapes and tuple(decoder_shapes[0]) != tuple(self.shape):
            raise ValueError(
                f"encoder bottleneck {tuple(self.shape)} does not match the decoder input "
                f"{tuple(decoder_shapes[0])} (channels, rows); align the backbone dims"
            )
        dim = self.frames_per_code * self.shape.channels * self.shape.rows
        width = self.codebook_spec.dim(self.codebook_dim)
        self.stages = nn.ModuleList(
            FactorizedStage(dim, self.codebook_spec.make(width, stage))
            for stage in range(self.max_streams)
        )

    def codebooks_by_stream(self) -> list[list[CodebookKind]]:
        return [[stage.codebook] for stage in self.stages] if self._bound else []

    def streams_per_sample(self, batch: int, n_streams: int, device: torch.device) -> Tensor:
        """(B,) stream counts of a batch: ``n_streams``, or DAC's per-sample draws in training
        (at most ``n_streams``). Each training call advances the draws."""
        counts = torch.full((batch,), n_streams, dtype=torch.long)
        dropped = int(batch * self.quantizer_dropout)
        if self.training and dropped:
            step = int(self.dropout_batches)
            seed = (self.dropout_seed * 1_000_003 + step) * 4_099 + sync.rank()
            generator = torch.Generator().manual_seed(seed)
            drawn = torch.randint(1, self.max_streams + 1, (batch,), generator=generator)
            counts[:dropped] = drawn[:dropped].clamp(max=n_streams)
            self.dropout_batches += 1
        return counts.to(device)

    def _latent(self, feats: list[Tensor]) -> Tensor:
        return to_frames(feats[-1], self.frames_per_code).transpose(1, 2)  # (B, D, T)

    def _features(self, latent: Tensor) -> Tensor:
        return from_frames(latent.transpose(1, 2), self.shape, self.frames_per_code)

    def forward(
        self, feats: list[Tensor], decoder: Decoder, n_streams: int, bypass: bool = False
    ) -> tuple[Tensor, QuantizerOutput]:
        residual = self._latent(feats)
        batch, frames = residual.shape[0], residual.shape[-1]
        zero = residual.new_zeros(batch, dtype=torch.float32)
        commit, book = zero, zero.clone()
        total: Tensor | float = 0.0
        codes: list[Tensor] = []
        if bypass:
            for stage in self.stages:
                q = stage.bypass(residual)
                residual, total = residual - q, total + q
        else:
            n_streams = self.check_streams(n_streams)
            counts = self.streams_per_sample(batch, n_streams, residual.device)
            # Training runs every stage and masks per sample (DAC); eval runs only those sent.
            for i in range(self.max_streams if self.training else n_streams):
                q, c, c_loss, b_loss = self.stages[i](residual)
                residual = residual - q
                if self.training:  # samples sending fewer streams: output and losses masked
                    mask = (counts > i).to(c_loss.dtype)
                    q = q * mask[:, None, None].to(q.dtype)
                    c_loss, b_loss = c_loss * mask, b_loss * mask
                total = total + q
                commit, book = commit + c_loss, book + b_loss
                codes.append(c)
        codes_t = (
            torch.stack(codes, dim=1).unsqueeze(2)
            if codes
            else torch.zeros(batch, 0, 1, frames, dtype=torch.long, device=residual.device)
        )
        losses = {"commit": commit.mean(), "codebook": book.mean()}
        return decoder(self._features(total)), QuantizerOutput(codes_t, losses)

    @torch.no_grad()
    def encode(self, feats: list[Tensor], decoder: Decoder, n_streams: int) -> Tensor:
        """Codes (B, n_streams, 1, frames) int64."""
        n_streams = self.check_streams(n_streams)
        residual, codes = self._latent(feats), []
        for i in range(n_streams):
            codes.append(self.stages[i].encode(residual))
            if i + 1 < n_streams:
                residual = residual - self.stages[i].decode(codes[-1])
        return torch.stack(codes, dim=1).unsqueeze(2)

    def decode(self, codes: Tensor, decoder: Decoder) -> Tensor:
        """Decoder output for codes (B, streams, 1, frames): the sum of the streams' vectors."""
        streams = self.check_streams(codes.shape[1])
        total: Tensor | float = 0.0
        for i in range(streams):  # summed in the order of the eval forward: the same floats
            total = total + self.stages[i].decode(codes[:, i, 0])
        return decoder(self._features(total))
