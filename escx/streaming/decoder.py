"""``StreamDecoder``: codes pushed a few frames at a time -> the samples now final.

The samples, concatenated, are ``codec.decode`` of all the codes within float rounding; with the
length passed to :meth:`StreamDecoder.flush` they are exactly as many as were encoded.
"""

from __future__ import annotations

import torch
from torch import Tensor

from escx.streaming.latency import Latency
from escx.streaming.plan import device_of, latency, plan_decoder, unwrap


class StreamDecoder:
    """Incremental decoder: :meth:`push` codes, get the samples that became final.

    The stream count (bitrate) is that of the first codes pushed and stays fixed.

    Args:
        codec: a codec or :class:`~escx.api.CodecHandle`.
        window: codecs without a layer-by-layer plan only: frames of context and look-ahead
            each side of the finalised frames (default: 1 s).
    """

    def __init__(self, codec: object, *, window: int | None = None) -> None:
        self.codec = unwrap(codec)
        self.window = window
        self.device = device_of(self.codec)
        self._engine = None
        self.shape: tuple[int, int] | None = None  # (batch, streams)
        self.num_frames = 0  # code frames pushed
        self.num_samples = 0  # samples returned
        self.ended = False

    @property
    def lookahead_samples(self) -> int:
        """Samples of later code frames a decoded sample waits for, beyond its own frame."""
        return self.latency.decoder_lookahead

    @property
    def latency(self) -> Latency:
        """Look-aheads and end-to-end latency of this codec's streaming coder."""
        return latency(self.codec, self.window)

    def _check(self, codes: object) -> Tensor:
        codes = torch.as_tensor(codes)
        if codes.dim() == 3:
            codes = codes.unsqueeze(0)
        codec = self.codec
        if codes.dim() != 4 or codes.shape[2] != codec.num_groups or codes.shape[0] == 0:
            raise ValueError(
                f"codes must have shape (B, streams, {codec.num_groups}, frames), got "
                f"{tuple(codes.shape)}"
            )
        if not 1 <= codes.shape[1] <= codec.max_streams:
            raise ValueError(
                f"codes have {codes.shape[1]} streams; this model has 1..{codec.max_streams}"
            )
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        if self.shape is not None and tuple(codes.shape[:2]) != self.shape:
            raise ValueError(
                f"this stream has (batch, streams) {self.shape}, got {tuple(codes.shape[:2])}"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= codec.codebook_size):
            raise ValueError(f"codes must lie in [0, {codec.codebook_size}); the input is corrupt")
        return codes.long()

    def push(self, codes: Tensor) -> Tensor:
        """Take the next code frames (B, streams, groups, k), any k >= 0.

        Returns:
            float32 samples (B, n) that became final, n >= 0.
        """
        if self.ended:
            raise ValueError("the stream has ended (flush was called); start a new StreamDecoder")
        return self._feed(self._check(codes), False)

    def flush(self, codes: Tensor | None = None, length: int | None = None) -> Tensor:
        """End the stream: decode the last ``codes`` (if any) and return the remaining samples.

        Args:
            codes: the last code frames (what :meth:`StreamEncoder.flush` returned), or None.
            length: samples of the whole stream (``StreamEncoder.num_samples``); the output is
                trimmed to it. Default: every frame's samples.

        Raises:
            ValueError: no codes at all, or ``length`` that the frames cannot hold.
        """
        if self.ended:
            raise ValueError("the stream has ended already")
        codes = None if codes is None else self._check(codes)
        frames = self.num_frames + (0 if codes is None else codes.shape[-1])
        if frames == 0:
            raise ValueError("no codes were pushed; push at least one frame before flush")
        spf = self.codec.samples_per_frame
        if length is None:
            length = frames * spf
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive int, got {length!r}")
        if self.codec.num_frames(length) != frames or length < self.num_samples:
            raise ValueError(
                f"{frames} code frames cannot hold {length} samples (expected "
                f"{self.codec.num_frames(length)} frames; {self.num_samples} samples were "
                "returned already)"
            )
        self.ended = True
        audio = self._feed(codes, True)
        excess = self.num_samples - length
        return audio[:, : audio.shape[-1] - excess] if excess > 0 else audio

    def _feed(self, codes: Tensor | None, ended: bool) -> Tensor:
        if codes is not None:
            if self._engine is None:
                self.shape = (codes.shape[0], codes.shape[1])
                self._engine = plan_decoder(self.codec, codes.shape[1], self.window)
            self.num_frames += codes.shape[-1]
            codes = codes.to(self.device)
        audio = None
        if self._engine is not None:
            with torch.inference_mode(), self.codec.inference_autocast(self.device):
                audio = self._engine(codes, ended)
        if audio is None:
            batch = self.shape[0] if self.shape else 1
            audio = torch.zeros(batch, 0, device=self.device)
        audio = audio.float()
        self.num_samples += audio.shape[-1]
        return audio
