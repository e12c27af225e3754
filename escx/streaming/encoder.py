"""``StreamEncoder``: audio pushed in pieces of any length -> the codes of the frames now final.

Example::

    from escx.streaming import StreamDecoder, StreamEncoder
    encoder, decoder = StreamEncoder(codec, kbps=6), StreamDecoder(codec)
    for piece in microphone():                   # (1, n) float32, any n
        codes = encoder.push(piece)              # (1, 4, 3, k), k >= 0
        play(decoder.push(codes))                # (1, m) samples, m >= 0
    play(decoder.flush(encoder.flush(), length=encoder.num_samples))

The codes, concatenated, are those of ``codec.encode`` on the whole signal (ESC's layer-by-layer
plan computes each layer's outputs once, exactly as the whole-signal computation does; other
codecs are coded in windows, :mod:`escx.streaming.windowed`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from escx.streaming.latency import Latency
from escx.streaming.plan import device_of, latency, plan_encoder, unwrap


def check_piece(audio: object, batch: int | None) -> Tensor:
    """A pushed piece as float32 (B, n); raises a one-line ValueError for a bad one."""
    audio = torch.as_tensor(audio)
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2 or audio.shape[0] == 0:
        raise ValueError(f"audio must have shape (B, n) or (n,), got {tuple(audio.shape)}")
    if batch is not None and audio.shape[0] != batch:
        raise ValueError(f"this stream has batch size {batch}, got {audio.shape[0]} rows")
    if not audio.is_floating_point():
        raise ValueError(f"audio must be floating point samples, got {audio.dtype}")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples; clean the input first")
    return audio.float()


class StreamEncoder:
    """Incremental encoder: :meth:`push` audio, get the codes of the frames that became final.

    Args:
        codec: a codec or :class:`~escx.api.CodecHandle` (eval mode is the caller's business,
            as for ``codec.encode``).
        kbps: bitrate (default: the highest).
        n_streams: stream count instead of ``kbps``.
        window: codecs without a layer-by-layer plan only: frames of context and look-ahead
            each side of the finalised frames (default: 1 s).
    """

    def __init__(
        self,
        codec: object,
        kbps: float | None = None,
        *,
        n_streams: int | None = None,
        window: int | None = None,
    ) -> None:
        self.codec = unwrap(codec)
        if n_streams is not None and kbps is not None:
            raise ValueError("pass either kbps or n_streams, not both")
        if n_streams is None:
            n_streams = (
                self.codec.max_streams if kbps is None else self.codec.streams_for_kbps(kbps)
            )
        if isinstance(n_streams, bool) or not 1 <= int(n_streams) <= self.codec.max_streams:
            raise ValueError(f"n_streams must be in 1..{self.codec.max_streams}, got {n_streams}")
        self.n_streams = int(n_streams)
        self.window = window
        self._engine = plan_encoder(self.codec, self.n_streams, window)
        self.device = device_of(self.codec)
        self.batch: int | None = None
        self.num_samples = 0  # samples pushed
        self.num_frames = 0  # code frames returned
        self.ended = False

    @property
    def lookahead_samples(self) -> int:
        """Samples after a frame's end that its codes wait for (its algorithmic look-ahead)."""
        return self.latency.encoder_lookahead

    @property
    def latency(self) -> Latency:
        """Look-aheads and end-to-end latency of this codec's streaming coder."""
        return latency(self.codec, self.window)

    def push(self, audio: Tensor) -> Tensor:
        """Take the next samples (B, n), any n >= 0.

        Returns:
            int64 codes (B, streams, groups, k) of the frames that became final, k >= 0.
        """
        if self.ended:
            raise ValueError("the stream has ended (flush was called); start a new StreamEncoder")
        audio = check_piece(audio, self.batch)
        self.batch = audio.shape[0]
        self.num_samples += audio.shape[-1]
        return self._feed(audio.to(self.device), False)

    def flush(self) -> Tensor:
        """End the stream: the codes of the remaining frames (the last one zero-padded)."""
        if self.ended:
            raise ValueError("the stream has ended already")
        if self.num_samples == 0:
            raise ValueError("no audio was pushed; push at least one sample before flush")
        self.ended = True
        spf = self.codec.samples_per_frame
        pad = self.codec.num_frames(self.num_samples) * spf - self.num_samples
        return self._feed(torch.zeros(self.batch, pad, device=self.device), True)

    def _feed(self, audio: Tensor, ended: bool) -> Tensor:
        with torch.inference_mode(), self.codec.inference_autocast(self.device):
            codes = self._engine(audio, ended)
        if codes is None:
            groups = self.codec.num_groups
            codes = torch.zeros(self.batch, self.n_streams, groups, 0, dtype=torch.long)
            codes = codes.to(self.device)
        self.num_frames += codes.shape[-1]
        return codes
