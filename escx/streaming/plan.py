"""Which incremental coder a codec gets, and its latency.

ESC-like codecs (an STFT codec with the Swin encoder and decoder, offline or causal, and
cross-scale or bottleneck VQ) stream layer by layer (:mod:`escx.streaming.swin`): every layer's
output is computed once, as soon as it is final. Any other codec with a finite receptive field is
re-coded in sliding windows (:mod:`escx.streaming.windowed`).
"""

from __future__ import annotations

import torch
from torch import nn

from escx.streaming import swin
from escx.streaming.latency import Latency, measure
from escx.streaming.windowed import WindowedDecoder, WindowedEncoder

# Window of the fallback coder in seconds on each side of the finalised frames: the chunked
# coder's default context (escx.chunking), which gives whole-file codes on real speech.
WINDOW_SECONDS = 1.0
ALIGN = 2  # frames; ESC's windows span 2 code frames (escx.chunking.DEFAULT_ALIGN)


def unwrap(codec: object) -> nn.Module:
    """The codec of a :class:`~escx.api.CodecHandle`, or ``codec`` itself."""
    inner = codec if isinstance(codec, nn.Module) else getattr(codec, "codec", None)
    if not isinstance(inner, nn.Module) or not hasattr(inner, "samples_per_frame"):
        raise TypeError(f"expected an escx codec or CodecHandle, got {type(codec).__name__}")
    return inner


def device_of(codec: nn.Module) -> torch.device:
    """Where the codec's parameters are (the CPU for a codec without any)."""
    param = next(codec.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def window_frames(codec: nn.Module, frames: int | None) -> int:
    """Frames of the fallback window on each side (``frames``, or :data:`WINDOW_SECONDS`)."""
    if frames is None:
        frames = round(WINDOW_SECONDS * codec.frame_rate)
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        raise ValueError(f"window frames must be an int >= 0, got {frames!r}")
    return frames + (-frames) % ALIGN


def plan_encoder(codec: nn.Module, n_streams: int, window: int | None = None):
    """The incremental encoder of ``codec``: layer by layer where :func:`swin.supports` it,
    else windows of ``window`` frames of context and look-ahead."""
    if swin.supports(codec):
        return swin.SwinStreamEncoder(codec, n_streams)
    frames = window_frames(codec, window)
    return WindowedEncoder(codec, n_streams, frames, frames, ALIGN)


def plan_decoder(codec: nn.Module, n_streams: int, window: int | None = None):
    """The incremental decoder of ``codec`` (see :func:`plan_encoder`)."""
    if swin.supports(codec):
        return swin.SwinStreamDecoder(codec, n_streams)
    frames = window_frames(codec, window)
    return WindowedDecoder(codec, frames, frames, ALIGN)


def latency(codec: object, window: int | None = None) -> Latency:
    """Look-aheads and end-to-end algorithmic latency of ``codec``'s streaming coder.

    Args:
        codec: a codec or :class:`~escx.api.CodecHandle`.
        window: the fallback coder's window in frames (codecs without a layer-by-layer plan).
    """
    codec = unwrap(codec)
    streams = codec.max_streams
    encoder = plan_encoder(codec, streams, window)
    decoder = plan_decoder(codec, streams, window)
    return measure(
        encoder.final_frames,
        decoder.final_samples,
        codec.samples_per_frame,
        int(codec.sample_rate),
    )
