"""The STFT front end, incrementally: samples -> STFT frames and STFT frames -> samples.

Both framings of :mod:`escx.spectral` are covered. The centred framing (ESC) reflects the signal
at both ends; a frame is final once the samples under its window are, and the frames that reach
past the end wait for the end of the stream. Its inverse overlap-adds: a sample is final once
every frame whose window covers it has arrived, and is divided by the same window envelope as
:func:`torch.istft` uses. The causal framing reads nothing after a frame's own hop, and its
inverse turns each frame into its own hop of samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from escx.spectral import CausalSTFT, ComplexSTFT
from escx.streaming.ops import TimeOp
from escx.streaming.timeline import TimeBuffer


class CenteredFramer(TimeOp):
    """Samples (B, n) -> centred STFT frames (B, 2, F, t), as :class:`ComplexSTFT` computes them
    on the whole (zero-padded) signal.

    Args:
        stft: the codec's :class:`~escx.spectral.ComplexSTFT`.
    """

    axis = -1

    def __init__(self, stft: ComplexSTFT) -> None:
        self.stft = stft
        self.half = stft.n_fft // 2  # reflect padding on each side (centred frames)
        self.buffer = TimeBuffer(-1)
        self.done = 0

    def ready(self, received: int, ended: bool) -> int:
        hop = self.stft.hop_length
        if ended:
            return received // hop + 1
        return max(0, (received - self.half - 1) // hop + 1)

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        self.buffer.append(x)
        n, hop = self.buffer.end, self.stft.hop_length
        end = self.ready(n, ended)
        if end <= self.done:
            return None
        # Samples under frames [done, end), in signal coordinates; reflected where they are
        # outside the signal, exactly as torch.stft(center=True) pads.
        lo, hi = self.done * hop - self.half, (end - 1) * hop + self.stft.n_fft - self.half
        segment = self.buffer.take(max(lo, 0), min(hi, n))
        left, right = max(0, -lo), max(0, hi - n)
        if left or right:
            segment = F.pad(segment[:, None], (left, right), mode="reflect")[:, 0]
        with torch.autocast(device_type=segment.device.type, enabled=False):
            spec = torch.stft(
                segment.float(),
                self.stft.n_fft,
                hop,
                self.stft.win_length,
                self.stft.window,
                center=False,
                normalized=False,
                onesided=True,
                return_complex=True,
            )
        self.done = end
        self.buffer.drop_before(end * hop - self.half)
        return torch.view_as_real(spec).permute(0, 3, 1, 2)


class CausalFramer(TimeOp):
    """Samples (B, n) -> causal STFT frames (B, 2, F, t) (:class:`~escx.spectral.CausalSTFT`).

    Args:
        stft: the codec's :class:`~escx.spectral.CausalSTFT`.
    """

    axis = -1

    def __init__(self, stft: CausalSTFT) -> None:
        self.stft = stft
        self.buffer = TimeBuffer(-1)
        self.buffer.start = -stft.history  # the zeros before the signal, appended on first use
        self.done = 0

    def ready(self, received: int, ended: bool) -> int:
        return received // self.stft.hop_length

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        if self.buffer.data is None and x is not None:
            self.buffer.data = x.new_zeros(x.shape[0], self.stft.history)
        self.buffer.append(x)
        hop = self.stft.hop_length
        end = self.ready(self.buffer.end, ended)
        if end <= self.done:
            return None
        segment = self.buffer.take(self.done * hop - self.stft.history, end * hop)
        self.done = end
        self.buffer.drop_before(end * hop - self.stft.history)
        return self.stft.analyse(segment)


class OverlapAdd(TimeOp):
    """Centred STFT frames (B, 2, F, t) -> samples, as :meth:`ComplexSTFT.inverse` computes them.

    Output sample ``n`` sits at ``n + n_fft // 2`` in the overlap-added frames; it is final once
    no later frame's window covers it.

    Args:
        stft: the codec's :class:`~escx.spectral.ComplexSTFT`.
    """

    axis = 3

    def __init__(self, stft: ComplexSTFT) -> None:
        self.stft = stft
        n_fft, win = stft.n_fft, stft.win_length
        left = (n_fft - win) // 2
        self.window = F.pad(stft.window.float(), (left, n_fft - win - left))
        self.support = (left, left + win)  # where the padded window is non-zero
        self.half = n_fft // 2
        self.acc = TimeBuffer(-1)  # overlap-added frames x window, padded-signal positions
        self.env = TimeBuffer(-1)  # overlap-added window^2
        self.frames = 0  # frames received
        self.emitted = 0  # output samples returned

    def ready(self, received: int, ended: bool) -> int:
        hop = self.stft.hop_length
        if ended:
            return received * hop
        # Later frames start their window at received * hop + support[0] (padded positions).
        return max(0, received * hop + self.support[0] - self.half)

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        hop, n_fft = self.stft.hop_length, self.stft.n_fft
        if x is not None and x.shape[-1]:
            with torch.autocast(device_type=x.device.type, enabled=False):
                spec = torch.view_as_complex(x.float().permute(0, 2, 3, 1).contiguous())
                frames = torch.fft.irfft(spec, n=n_fft, dim=1) * self.window[:, None]
            self._add(frames)
        end = self.ready(self.frames, ended)
        if end <= self.emitted:
            return None
        lo, hi = self.emitted + self.half, end + self.half
        out = self.acc.take(lo, hi) / self.env.take(lo, hi)
        self.emitted = end
        keep = min(hi, self.frames * hop)  # the next frame adds from here on
        self.acc.drop_before(keep)
        self.env.drop_before(keep)
        return out

    def _add(self, frames: Tensor) -> None:
        """Overlap-add (B, n_fft, k) windowed frames at positions ``hop * t``."""
        hop, n_fft = self.stft.hop_length, self.stft.n_fft
        b, _, k = frames.shape
        start = self.frames * hop
        stop = (self.frames + k - 1) * hop + n_fft
        if self.acc.data is None:
            self.acc.data = frames.new_zeros(b, 0)
            self.env.data = frames.new_zeros(1, 0)
            self.acc.start = self.env.start = 0
        grow = stop - self.acc.end
        if grow > 0:
            self.acc.append(frames.new_zeros(b, grow))
            self.env.append(frames.new_zeros(1, grow))
        acc = self.acc.take(start, stop)  # views: added in place
        env = self.env.take(start, stop)
        square = self.window**2
        for t in range(k):  # in frame order, as torch.istft's fold sums them
            acc[:, t * hop : t * hop + n_fft] += frames[:, :, t]
            env[:, t * hop : t * hop + n_fft] += square
        self.frames += k


class LastHop(TimeOp):
    """Causal STFT frames (B, 2, F, t) -> samples: each frame gives its own hop.

    Args:
        stft: the codec's :class:`~escx.spectral.CausalSTFT`.
    """

    axis = 3

    def __init__(self, stft: CausalSTFT) -> None:
        self.stft = stft

    def ready(self, received: int, ended: bool) -> int:
        return received * self.stft.hop_length

    def __call__(self, x: Tensor | None, ended: bool) -> Tensor | None:
        if x is None or not x.shape[-1]:
            return None
        return self.stft.synthesise(x)


def framer(stft: ComplexSTFT) -> TimeOp:
    """The incremental analysis of a codec's STFT."""
    return CausalFramer(stft) if isinstance(stft, CausalSTFT) else CenteredFramer(stft)


def synthesis(stft: ComplexSTFT) -> TimeOp:
    """The incremental inverse of a codec's STFT."""
    return LastHop(stft) if isinstance(stft, CausalSTFT) else OverlapAdd(stft)
