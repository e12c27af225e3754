"""Layer-by-layer streaming of an STFT codec with Swin backbones (ESC and the causal ESC).

The encoder runs the STFT, the patch embedding and every Swin block as incremental operations
(:mod:`escx.streaming.ops`); the quantizer codes each code frame as soon as its features are
final. Cross-scale RVQ (ESC's) needs the decoder's states at the input of each decoder stage, so
the encoder also runs those stages incrementally, and stream ``s + 1`` of a frame is coded once
the decoder state of that frame is final. Bottleneck quantizers (``ResidualVQ``, ``ProductVQ``,
``PlainRVQ``) code the last feature map frame by frame. The decoder mirrors this from codes to
samples. Each operation computes each output once, so a push costs what the frames it finalises
cost, whatever the stream's age.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from escx.backbones.swin import SwinDecoder, SwinEncoder
from escx.quantizers.cross_scale import CrossScaleRVQ
from escx.quantizers.residual import ResidualVQ
from escx.streaming.causal_block import CausalBlockOp, causal_deembed_ops
from escx.streaming.ops import BlockOp, DeEmbedOp, Pointwise, TimeOp
from escx.streaming.spectral_ops import framer, synthesis
from escx.streaming.timeline import TimeBuffer


def supports(codec: nn.Module) -> bool:
    """Whether ``codec`` streams layer by layer: an STFT codec with the Swin encoder and decoder
    (offline or causal) and cross-scale RVQ or a bottleneck residual/product VQ."""
    return (
        hasattr(codec, "stft")
        and isinstance(getattr(codec, "encoder", None), SwinEncoder)
        and isinstance(getattr(codec, "decoder", None), SwinDecoder)
        and isinstance(getattr(codec, "quantizer", None), CrossScaleRVQ | ResidualVQ)
    )


def block_op(stage: nn.Module, index: int) -> TimeOp:
    """Block ``index`` of a stage as an incremental operation on channels-last tokens."""
    return CausalBlockOp(stage, index) if stage.causal_block else BlockOp(stage, index)


def stage_ops(stage: nn.Module) -> list[TimeOp]:
    """A Swin stage's blocks and its patch merge or split, on channels-first maps."""
    ops: list[TimeOp] = [block_op(stage, i) for i in range(len(stage.blocks))]
    if stage.scale is not None:
        ops.append(Pointwise(stage.scale, axis=2))
    return [ChannelsFirst(ops)]


class ChannelsFirst(TimeOp):
    """A chain of channels-last operations applied to channels-first (B, C, H, W) maps."""

    axis = 3

    def __init__(self, ops: list[TimeOp]) -> None:
        self.ops = ops

    def ready(self, received: int, ended: bool) -> int:
        for op in self.ops:
            received = op.ready(received, ended)
        return received

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        y = run(self.ops, None if x is None else x.permute(0, 2, 3, 1).contiguous(), ended)
        return None if y is None else y.permute(0, 3, 1, 2)


def run(ops: list[TimeOp], x: Tensor | None, ended: bool) -> Tensor | None:
    """Feed ``x`` through a chain of operations (each is called, so each can flush)."""
    for op in ops:
        x = op(x, ended)
    return x


def ready(ops: list[TimeOp], received: int) -> int:
    """Outputs of a chain final once ``received`` inputs are (mid-stream)."""
    for op in ops:
        received = op.ready(received, False)
    return received


class _Identity:
    """Stands in for the decoder when a bottleneck quantizer decodes: returns its input map."""

    def __call__(self, z: Tensor, refine: object = None) -> Tensor:
        return z


class SwinStreamEncoder:
    """Audio -> codes of an STFT codec with Swin backbones, layer by layer.

    Args:
        codec: the codec (:func:`supports` holds).
        n_streams: streams coded.
    """

    def __init__(self, codec: nn.Module, n_streams: int) -> None:
        encoder, quantizer = codec.encoder, codec.quantizer
        self.quantizer, self.n_streams = quantizer, n_streams
        self.fpc = quantizer.frames_per_code
        self.front: list[TimeOp] = [
            framer(codec.stft),
            Pointwise(encoder.patch_embed, axis=3, group=encoder.time_patch),
        ]
        stages = [encoder.pre_nn, *encoder.stages]
        self.levels: list[list[TimeOp]] = [stage_ops(stage) for stage in stages]
        self.cross_scale = isinstance(quantizer, CrossScaleRVQ)
        refinements = n_streams - 1 if self.cross_scale else 0
        last = len(self.levels) - 1
        # The feature map each stream codes: stream 0 the last level, stream s + 1 (a residual
        # against the decoder state entering decoder stage s) level last - s.
        self.tap_level = [last] + [last - s for s in range(refinements)]
        self.taps = [TimeBuffer(3) for _ in self.tap_level]
        # The decoder stages CS-RVQ runs inside the encoder (all but the last refinement's).
        self.stages = [stage_ops(codec.decoder.stages[s]) for s in range(max(0, refinements - 1))]
        self.h = [TimeBuffer(3) for _ in range(refinements)]  # decoder state entering stage s
        self.codes = [TimeBuffer(2) for _ in range(n_streams)]
        self.emitted = 0

    def final_frames(self, samples: int) -> int:
        """Code frames final once ``samples`` samples are (mid-stream)."""
        patches = ready(self.front, samples)
        levels = []
        for ops in self.levels:
            patches = ready(ops, patches)
            levels.append(patches)
        h = levels[-1] // self.fpc * self.fpc  # decoder state entering stage 0
        frames = h // self.fpc
        for s in range(len(self.h)):
            frames = min(frames, min(levels[self.tap_level[s + 1]], h) // self.fpc)
            if s < len(self.stages):
                h = ready(self.stages[s], h)
        return frames

    def __call__(self, audio: Tensor | None, ended: bool) -> Tensor | None:
        """Feed samples; return the codes (B, streams, groups, k) of the frames now final."""
        x = run(self.front, audio, ended)
        for level, ops in enumerate(self.levels):
            x = run(ops, x, ended)
            for tap, tap_level in zip(self.taps, self.tap_level, strict=True):
                if tap_level == level:
                    tap.append(x)
        self._first_stream()
        for s in range(len(self.h)):
            self._refinement(s, ended)
        return self._emit()

    def _whole_frames(self, lo: int, hi: int) -> int:
        """``hi`` rounded down to whole code frames after ``lo`` (patch positions)."""
        return hi - (hi - lo) % self.fpc

    def _first_stream(self) -> None:
        """Stream 0 (and, for a bottleneck quantizer, every stream) of the new frames."""
        tap, lo = self.taps[0], self.codes[0].end * self.fpc
        hi = self._whole_frames(lo, tap.end)
        if hi <= lo:
            return
        z = tap.take(lo, hi)
        if not self.cross_scale:
            codes = self.quantizer.encode([z], None, self.n_streams)
            for s in range(self.n_streams):
                self.codes[s].append(codes[:, s])
        else:
            code = self.quantizer.scales[0].encode(z)
            self.codes[0].append(code)
            if self.h:
                self.h[0].append(self.quantizer.scales[0].decode(code))
        tap.drop_before(hi)

    def _refinement(self, s: int, ended: bool) -> None:
        """Stream ``s + 1``: the residual of its feature map against the decoder state entering
        decoder stage ``s``; then that stage, whose output is the next stream's state."""
        scale = self.quantizer.scales[s + 1]
        tap, h, lo = self.taps[s + 1], self.h[s], self.codes[s + 1].end * self.fpc
        hi = self._whole_frames(lo, min(tap.end, h.end))
        refined = None
        if hi > lo:
            state = h.take(lo, hi)
            code = scale.encode(tap.take(lo, hi) - state)
            self.codes[s + 1].append(code)
            refined = state + scale.decode(code)
            tap.drop_before(hi)
            h.drop_before(hi)
        if s < len(self.stages):
            self.h[s + 1].append(run(self.stages[s], refined, ended))

    def _emit(self) -> Tensor | None:
        end = min(c.end for c in self.codes)
        if end <= self.emitted:
            return None
        out = torch.stack([c.take(self.emitted, end) for c in self.codes], dim=1)
        for c in self.codes:
            c.drop_before(end)
        self.emitted = end
        return out


class SwinStreamDecoder:
    """Codes -> samples of an STFT codec with Swin backbones, layer by layer.

    Args:
        codec: the codec (:func:`supports` holds).
        n_streams: streams in the codes.
    """

    def __init__(self, codec: nn.Module, n_streams: int) -> None:
        decoder, quantizer = codec.decoder, codec.quantizer
        self.quantizer, self.n_streams = quantizer, n_streams
        self.fpc = quantizer.frames_per_code
        self.cross_scale = isinstance(quantizer, CrossScaleRVQ)
        self.stages = [stage_ops(stage) for stage in decoder.stages]
        deembed = decoder.patch_deembed
        self.head = stage_ops(decoder.post_nn)
        self.head += causal_deembed_ops(deembed) if deembed.causal else [DeEmbedOp(deembed)]
        self.head.append(synthesis(codec.stft))
        # Codes wait here until the decoder state of their frame reaches the stage they refine.
        self.refinements = min(len(self.stages), n_streams - 1) if self.cross_scale else 0
        self.codes = TimeBuffer(3)
        self.refined = [0] * self.refinements  # frames whose refinement entered stage s

    def final_samples(self, frames: int) -> int:
        """Samples final once ``frames`` code frames are (mid-stream)."""
        patches = frames * self.fpc
        for ops in self.stages:
            patches = ready(ops, patches)
        return ready(self.head, patches)

    def __call__(self, codes: Tensor | None, ended: bool) -> Tensor | None:
        """Feed codes (B, streams, groups, k); return the samples now final."""
        h = None
        if codes is not None and codes.shape[-1]:
            if self.refinements:
                self.codes.append(codes)
            if self.cross_scale:
                h = self.quantizer.scales[0].decode(codes[:, 0])
            else:
                h = self.quantizer.decode(codes, _Identity())
        for s, ops in enumerate(self.stages):
            if s < self.refinements:
                h = self._refine(s, h)
            h = run(ops, h, ended)
        return run(self.head, h, ended)

    def _refine(self, stage: int, h: Tensor | None) -> Tensor | None:
        """Add stream ``stage + 1``'s quantized residual to the new decoder state."""
        if h is None or not h.shape[-1]:
            return h
        lo = self.refined[stage]
        hi = lo + h.shape[-1] // self.fpc
        codes = self.codes.take(lo, hi)[:, stage + 1]
        self.refined[stage] = hi
        self.codes.drop_before(min(self.refined))
        return h + self.quantizer.scales[stage + 1].decode(codes)
