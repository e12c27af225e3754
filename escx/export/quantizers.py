"""Quantizers in exportable form: codebook search without chunks, decoding with a stream mask.

Encoding reuses each quantizer's own ``encode``. Two things change for a graph:

* a learned codebook searches in blocks of :data:`escx.quantizers.kmeans.CHUNK` rows, a loop
  whose trip count depends on the input length; :func:`unchunked_codebooks` gives each learned
  codebook of a (copied) codec the same search in one block;
* the decoder graph takes a symbolic number of streams, while escx's ``decode`` chooses in
  Python which refinements run. :func:`decode_streams` decodes every stream and multiplies the
  untransmitted ones by zero: ``h + 0 * r`` is ``h`` and ``h + 1 * r`` is ``h + r`` bit for bit
  (for finite ``r``), so the result equals escx's decode of the first k streams exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.backbones.base import Decoder
from escx.quantizers.base import Quantizer, from_frames
from escx.quantizers.cross_scale import CrossScaleRVQ
from escx.quantizers.factorized import FactorizedRVQ
from escx.quantizers.learned import LearnedCodebook
from escx.quantizers.residual import ResidualVQ

SUPPORTED = (CrossScaleRVQ, ResidualVQ, FactorizedRVQ)


class _UnchunkedSearch:
    """Mixin: ``nearest`` over all rows at once (the same arithmetic per row)."""

    def nearest(self, z: Tensor, book: Tensor | None = None) -> Tensor:
        book = (self.codewords() if book is None else book).float()
        points = z.float()
        if self.l2norm:
            points, book = F.normalize(points, dim=-1), F.normalize(book, dim=-1)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 does not change the argmin (as escx).
        return (book.pow(2).sum(1)[None] - 2 * points @ book.t()).argmin(1)


def unchunked_codebooks(module: nn.Module) -> None:
    """Give every learned codebook in ``module`` (a copy: classes are swapped in place) the
    one-block search of :class:`_UnchunkedSearch`."""
    for child in module.modules():
        cls = type(child)
        if isinstance(child, LearnedCodebook) and not isinstance(child, _UnchunkedSearch):
            child.__class__ = type(f"Unchunked{cls.__name__}", (_UnchunkedSearch, cls), {})


def unsupported_quantizer(quantizer: Quantizer) -> str | None:
    """Why ``quantizer`` cannot be exported, or None."""
    if not isinstance(quantizer, SUPPORTED):
        names = ", ".join(cls.__name__ for cls in SUPPORTED)
        return f"quantizer {type(quantizer).__name__} (exportable: {names} and their subclasses)"
    return None


def decode_streams(quantizer: Quantizer, codes: Tensor, active: Tensor, decoder: Decoder):
    """Decoder output for codes of every stream, the streams with ``active == 0`` left out.

    Args:
        quantizer: a supported quantizer.
        codes: (B, max_streams, groups, frames) int64 (untransmitted streams: any valid code).
        active: (max_streams,) float, 1 for transmitted streams (a prefix), 0 for the others.
        decoder: the decoder (or a masked view of it).

    Returns:
        What ``quantizer.decode`` returns for the transmitted streams.
    """
    if isinstance(quantizer, CrossScaleRVQ):
        z0 = quantizer.scales[0].decode(codes[:, 0])

        def refine(stage: int, h: Tensor) -> Tensor:
            stream = stage + 1
            if stream >= quantizer.max_streams:
                return h
            return h + quantizer.scales[stream].decode(codes[:, stream]) * active[stream]

        return decoder(z0, refine)
    if isinstance(quantizer, ResidualVQ):
        pq = quantizer.pq
        outs = []
        for g, (up, books) in enumerate(zip(pq.up, pq.codebooks, strict=True)):
            z = sum(
                books[i].lookup(codes[:, i, g]) * active[i] for i in range(quantizer.max_streams)
            )
            outs.append(up(z))
        vectors = torch.cat(outs, dim=-1)
        return decoder(from_frames(vectors, quantizer.shape, quantizer.frames_per_code))
    if isinstance(quantizer, FactorizedRVQ):
        total: Tensor | float = 0.0
        for i in range(quantizer.max_streams):
            total = total + quantizer.stages[i].decode(codes[:, i, 0]) * active[i]
        return decoder(quantizer._features(total))
    raise ValueError(f"cannot export {unsupported_quantizer(quantizer)}")
