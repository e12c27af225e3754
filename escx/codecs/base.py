"""Codec interface: audio (B, L) <-> codes (B, streams, groups, frames)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from escx.quantizers.base import QuantizerOutput
from escx.registry import Registry


@dataclass
class CodecOutput:
    """Training forward result.

    Attributes:
        audio: (B, L) reconstruction, same length as the input.
        spec: (B, 2, F, T') predicted complex STFT (before the iSTFT).
        target_spec: (B, 2, F, T') complex STFT of the (padded) input, aligned with ``spec``.
        quantizer: codes, unweighted VQ losses and stats.
    """

    audio: Tensor
    spec: Tensor
    target_spec: Tensor
    quantizer: QuantizerOutput


class Codec(nn.Module):
    """A neural audio codec.

    Subclasses provide ``sample_rate``, ``max_streams``, ``num_groups``, ``codebook_size``,
    ``frame_rate`` (code frames per second) and the methods below. Output length always equals
    input length.
    """

    sample_rate: int
    max_streams: int
    num_groups: int
    codebook_size: int
    frame_rate: float
    bits_per_code: int

    def bitrate(self, n_streams: int) -> float:
        """Bits per second when ``n_streams`` streams are sent (1.5 kbps per stream in ESC)."""
        return n_streams * self.num_groups * self.bits_per_code * self.frame_rate

    def streams_for_kbps(self, kbps: float) -> int:
        """Stream count for a bitrate; raises ValueError if it is not a whole number of streams."""
        per_stream = self.bitrate(1) / 1000
        streams = round(kbps / per_stream)
        if streams < 1 or streams > self.max_streams or abs(streams * per_stream - kbps) > 1e-6:
            valid = ", ".join(f"{self.bitrate(s) / 1000:g}" for s in range(1, self.max_streams + 1))
            raise ValueError(
                f"--kbps {kbps:g} is not available: use a multiple of {per_stream:g} kbps up to "
                f"{self.bitrate(self.max_streams) / 1000:g} ({valid})"
            )
        return streams

    def forward(self, audio: Tensor, n_streams: int, bypass_quantizer: bool = False) -> CodecOutput:
        raise NotImplementedError

    def encode(self, audio: Tensor, n_streams: int) -> Tensor:
        raise NotImplementedError

    def decode(self, codes: Tensor, length: int) -> Tensor:
        raise NotImplementedError


CODECS: Registry = Registry("codec", Codec)
