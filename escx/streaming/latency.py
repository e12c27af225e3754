"""Look-ahead and algorithmic latency of a streaming coder, from its finality rules.

Every incremental operation states, without computing anything, how many of its outputs are final
once ``n`` of its inputs are (:meth:`escx.streaming.ops.TimeOp.ready`). Chained, these give
``final_frames(samples)`` for an encoder and ``final_samples(frames)`` for a decoder, from which
the numbers below follow exactly (they are what the coder does, not an estimate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Frames scanned when measuring: enough for the offline ESC-Base's first code (21 frames) and its
# steady, 2-frame periodic pattern after that.
SCAN_FRAMES = 96


@dataclass(frozen=True)
class Latency:
    """Delays of a codec's streaming coder, in samples.

    Attributes:
        sample_rate: samples per second.
        frame: samples per code frame (320 for ESC: 20 ms).
        encoder_lookahead: samples after a frame's end that its codes wait for.
        decoder_lookahead: samples of later code frames (counted in their audio length) that a
            decoded sample waits for, beyond the frame that holds it.
        total: end-to-end algorithmic latency: the longest wait from an input sample to the
            same output sample (frame + both look-aheads, with the alignment of their grids).
    """

    sample_rate: int
    frame: int
    encoder_lookahead: int
    decoder_lookahead: int
    total: int

    def ms(self, samples: int) -> float:
        """``samples`` in milliseconds."""
        return 1000.0 * samples / self.sample_rate


def first_input(final_frames: Callable[[int], int], frames: int, frame: int) -> int:
    """Fewest samples after which ``frames`` code frames are final (binary search)."""
    lo, hi = frames * frame, frames * frame + frame
    while final_frames(hi) < frames:
        lo, hi = hi, 2 * hi
    while lo < hi:
        mid = (lo + hi) // 2
        if final_frames(mid) >= frames:
            hi = mid
        else:
            lo = mid + 1
    return lo


def measure(
    final_frames: Callable[[int], int],
    final_samples: Callable[[int], int],
    frame: int,
    sample_rate: int,
    frames: int = SCAN_FRAMES,
) -> Latency:
    """Look-aheads and latency from an encoder's and a decoder's finality rules.

    Args:
        final_frames: code frames final once ``n`` samples are (the encoder, mid-stream).
        final_samples: samples final once ``k`` code frames are (the decoder, mid-stream).
        frame: samples per code frame.
        sample_rate: samples per second.
        frames: code frames scanned.
    """
    needed = [0] + [first_input(final_frames, k, frame) for k in range(1, frames + 1)]
    encoder = max(needed[k] - k * frame for k in range(1, frames + 1))
    decoder = total = 0
    previous = 0  # samples final before frame k arrived
    for k in range(1, frames + 1):
        final = final_samples(k)
        if final > previous:
            # The first sample that frame k finalises waited the longest of them.
            decoder = max(decoder, k * frame - (previous // frame + 1) * frame)
            total = max(total, needed[k] - previous)
            previous = final
    return Latency(sample_rate, frame, max(0, encoder), decoder, total)
