"""Streaming by re-coding a sliding window: for codecs without a layer-by-layer plan.

Any codec whose receptive field is finite streams this way (DAC, the conv backbone): a frame is
coded, together with ``context`` frames of real audio before it and ``lookahead`` after it, once
those have arrived, and only its codes are kept, exactly as :mod:`escx.chunking` codes chunks of
a long file. Window starts are multiples of ``align`` frames (2 for ESC's 4-patch windows), so the
windows' grids coincide with the whole signal's. The cost of a push is that of the frames it
finalises plus the two contexts, whatever the stream's age; the look-ahead is ``lookahead``
frames (the chunked coder's default context, 1 s, unless the caller knows the codec's reach).
"""

from __future__ import annotations

from torch import Tensor, nn

from escx.streaming.timeline import TimeBuffer


class WindowedEncoder:
    """Audio -> codes by coding windows of ``context + k + lookahead`` frames.

    Args:
        codec: any codec.
        n_streams: streams coded.
        context: frames of audio coded before the finalised ones and thrown away.
        lookahead: frames of audio after the finalised ones that they wait for.
        align: window starts and finalised runs are multiples of this many frames.
    """

    def __init__(
        self, codec: nn.Module, n_streams: int, context: int, lookahead: int, align: int
    ) -> None:
        self.codec, self.n_streams = codec, n_streams
        self.context, self.lookahead, self.align = context, lookahead, align
        self.spf = codec.samples_per_frame
        self.audio = TimeBuffer(-1)
        self.done = 0  # frames coded

    def final_frames(self, samples: int) -> int:
        """Code frames final once ``samples`` samples are (mid-stream)."""
        frames = max(0, samples // self.spf - self.lookahead)
        return frames - frames % self.align

    def __call__(self, audio: Tensor | None, ended: bool) -> Tensor | None:
        self.audio.append(audio)
        end = self.audio.end // self.spf if ended else self.final_frames(self.audio.end)
        if end <= self.done:
            return None
        lo = max(0, self.done - self.context)
        lo -= lo % self.align
        hi = min(self.audio.end // self.spf, end + self.lookahead)
        codes = self.codec.encode(self.audio.take(lo * self.spf, hi * self.spf), self.n_streams)
        out = codes[..., self.done - lo : end - lo]
        self.done = end
        keep = max(0, end - self.context)
        self.audio.drop_before((keep - keep % self.align) * self.spf)
        return out


class WindowedDecoder:
    """Codes -> samples by decoding windows of ``context + k + lookahead`` frames.

    Args:
        codec: any codec.
        context: frames decoded before the finalised ones and thrown away.
        lookahead: frames after the finalised ones that they wait for.
        align: window starts and finalised runs are multiples of this many frames.
    """

    def __init__(self, codec: nn.Module, context: int, lookahead: int, align: int) -> None:
        self.codec = codec
        self.context, self.lookahead, self.align = context, lookahead, align
        self.spf = codec.samples_per_frame
        self.codes = TimeBuffer(3)
        self.done = 0  # frames decoded

    def final_samples(self, frames: int) -> int:
        """Samples final once ``frames`` code frames are (mid-stream)."""
        final = max(0, frames - self.lookahead)
        return (final - final % self.align) * self.spf

    def __call__(self, codes: Tensor | None, ended: bool) -> Tensor | None:
        self.codes.append(codes)
        end = self.codes.end if ended else self.final_samples(self.codes.end) // self.spf
        if end <= self.done:
            return None
        lo = max(0, self.done - self.context)
        lo -= lo % self.align
        hi = min(self.codes.end, end + self.lookahead)
        window = self.codes.take(lo, hi)
        audio = self.codec.decode(window, (hi - lo) * self.spf)
        out = audio[:, (self.done - lo) * self.spf : (end - lo) * self.spf]
        self.done = end
        keep = max(0, end - self.context)
        self.codes.drop_before(keep - keep % self.align)
        return out
