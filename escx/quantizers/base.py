"""Quantizer interface.

A quantizer sits between encoder and decoder and owns how the decoder is driven: a bottleneck
quantizer quantizes the coarsest feature map and decodes it; a cross-scale quantizer also refines
the decoder's states through the decoder's ``refine`` hook. Quantizers are configured first and
*bound* to a backbone's geometry by the codec (``bind``), so the same YAML entry works with any
backbone and no quantizer code looks at the backbone type.

Feature maps are grouped into code frames: ``frames_per_code`` consecutive time patches of a
(B, C, H, W) map are stacked into one vector of size frames_per_code * C * H (channel-major
``(c h)`` order inside a frame, docs/esc.md §7), giving (B, W / frames_per_code, D).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from escx.backbones.base import Decoder, FeatureShape
from escx.registry import Registry


@dataclass
class QuantizerOutput:
    """What a quantizer's forward returns beside the decoded spectrum.

    Attributes:
        codes: (B, streams, groups, frames) int64; empty along streams when bypassed.
        losses: unweighted scalar losses ``{"commit": ..., "codebook": ...}``.
        stats: detached extras for logging.
    """

    codes: Tensor
    losses: dict[str, Tensor]
    stats: dict[str, Tensor] = field(default_factory=dict)


def to_frames(x: Tensor, frames_per_code: int) -> Tensor:
    """(B, C, H, W) -> (B, W / f, f * C * H) code-frame vectors (element c * H + h per frame)."""
    b, c, h, w = x.shape
    if w % frames_per_code:
        raise ValueError(
            f"{w} time patches is not a multiple of {frames_per_code} frames per code; "
            "pad the input (the codec does this for you)"
        )
    return x.permute(0, 3, 1, 2).reshape(b, w // frames_per_code, frames_per_code * c * h)


def from_frames(v: Tensor, shape: FeatureShape, frames_per_code: int) -> Tensor:
    """Inverse of :func:`to_frames`: (B, T, f * C * H) -> (B, C, H, T * f)."""
    b, t, _ = v.shape
    x = v.reshape(b, t * frames_per_code, shape.channels, shape.rows)
    return x.permute(0, 2, 3, 1)


class Quantizer(nn.Module):
    """Base class of every quantizer.

    Subclasses implement :meth:`build` (create modules for a geometry), :meth:`forward`,
    :meth:`encode` and :meth:`decode`, and set ``max_streams``, ``num_groups``, ``codebook_size``
    and ``frames_per_code``.
    """

    max_streams: int
    num_groups: int
    codebook_size: int
    frames_per_code: int

    def __init__(self) -> None:
        super().__init__()
        self._bound = False

    @property
    def bits_per_code(self) -> int:
        """Bits that store one code: ceil(log2) of the code count (10 for 1024 or 1000 codes).

        The information per code, which bitrates count, is log2 of the code count
        (:meth:`escx.codecs.base.Codec.bitrate`).
        """
        return math.ceil(math.log2(self.codebook_size))

    def bind(self, encoder_shapes: list[FeatureShape], decoder_shapes: list[FeatureShape]) -> None:
        """Create the quantizer's modules for a backbone (called once by the codec)."""
        if self._bound:
            raise RuntimeError("this quantizer is already bound to a backbone; build a new one")
        self.build(list(encoder_shapes), list(decoder_shapes))
        self._bound = True

    def build(self, encoder_shapes: list[FeatureShape], decoder_shapes: list[FeatureShape]) -> None:
        raise NotImplementedError

    def check_streams(self, n_streams: int) -> int:
        """Validate a stream count (1..max_streams) and return it as int."""
        if isinstance(n_streams, bool) or not 1 <= int(n_streams) <= self.max_streams:
            raise ValueError(f"n_streams must be between 1 and {self.max_streams}, got {n_streams}")
        return int(n_streams)

    def forward(
        self, feats: list[Tensor], decoder: Decoder, n_streams: int, bypass: bool = False
    ) -> tuple[Tensor, QuantizerOutput]:
        """Quantize encoder features and decode.

        Args:
            feats: encoder feature maps (B, C_i, H_i, W), fine to coarse.
            decoder: the codec's decoder.
            n_streams: streams transmitted (1..max_streams).
            bypass: pre-training mode: projections stay in the path, no codes, zero VQ losses.

        Returns:
            Predicted STFT (B, 2, F, 2 W) and the :class:`QuantizerOutput`.
        """
        raise NotImplementedError

    def encode(self, feats: list[Tensor], decoder: Decoder, n_streams: int) -> Tensor:
        """Codes (B, n_streams, groups, W / frames_per_code) int64."""
        raise NotImplementedError

    def decode(self, codes: Tensor, decoder: Decoder) -> Tensor:
        """Predicted STFT (B, 2, F, 2 W) from codes (B, streams, groups, frames)."""
        raise NotImplementedError

    def codebooks_by_stream(self) -> list[list[nn.Module]]:
        """The codebook modules (:class:`~escx.quantizers.kinds.CodebookKind`) of each stream,
        coarse first.

        A quantizer without codebook slots (identity) keeps the default, an empty list.
        """
        return []

    def pop_restart_counts(self) -> dict[int, int]:
        """Dead entries restarted per stream since the last call (1-based stream keys).

        Only streams whose codebooks restart dead entries appear, so with restarts off this is
        empty. The counts are identical on every DDP rank; the training module logs them as
        ``train/codebook/restarts/stream{i}``.
        """
        return {
            stream: sum(book.pop_restarts() for book in books)
            for stream, books in enumerate(self.codebooks_by_stream(), start=1)
            if any(getattr(book, "restarts_enabled", False) for book in books)
        }


QUANTIZERS: Registry = Registry("quantizer", Quantizer)


def zero_losses(reference: Tensor) -> dict[str, Tensor]:
    """Zero commitment and codebook losses on ``reference``'s device."""
    zero = reference.new_zeros((), dtype=torch.float32)
    return {"commit": zero, "codebook": zero.clone()}
