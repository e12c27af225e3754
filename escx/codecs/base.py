"""Codec interface: audio (B, L) <-> codes (B, streams, groups, frames)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from escx.quantizers.base import QuantizerOutput
from escx.registry import Registry


@dataclass
class CodecOutput:
    """Training forward result.

    Attributes:
        audio: (B, L) reconstruction, same length as the input.
        spec: (B, 2, F, T') predicted complex STFT (before the iSTFT); None for a codec that
            predicts samples directly (``spectrum_output = False``).
        target_spec: (B, 2, F, T') complex STFT of the (padded) input, aligned with ``spec``;
            None when ``spec`` is.
        quantizer: codes, unweighted VQ losses and stats.
    """

    audio: Tensor
    spec: Tensor | None = None
    target_spec: Tensor | None = None
    quantizer: QuantizerOutput | None = None


class Codec(nn.Module):
    """A neural audio codec.

    Subclasses provide ``sample_rate``, ``max_streams``, ``num_groups``, ``codebook_size``,
    ``frame_rate`` (code frames per second) and the methods below. Output length always equals
    input length.

    Two class attributes describe the family without anyone testing the class: ``family`` is
    written into ``.escx`` headers (a file is decoded only by a codec of its family; see
    :data:`escx.bitstream.CODEC_FAMILIES`), and ``spectrum_output`` says whether
    :meth:`forward` returns the predicted and target spectra that spectral losses compare.
    """

    sample_rate: int
    max_streams: int
    num_groups: int
    codebook_size: int
    frame_rate: float
    bits_per_code: int
    family: str = "stft"
    spectrum_output: bool = True

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per code frame (320 for ESC and the 16 kHz DAC)."""
        return round(self.sample_rate / self.frame_rate)

    def num_frames(self, length: int) -> int:
        """Code frames for ``length`` samples: the last frame is zero-padded (at least one)."""
        return max(1, math.ceil(length / self.samples_per_frame))

    def check_codes(self, codes: Tensor, length: int) -> None:
        """Raise a one-line ValueError unless ``codes`` can decode to ``length`` samples."""
        if codes.dim() != 4 or codes.shape[2] != self.num_groups:
            raise ValueError(
                f"codes must have shape (B, streams <= {self.max_streams}, {self.num_groups}, "
                f"frames), got {tuple(codes.shape)}"
            )
        if codes.shape[-1] != self.num_frames(length):
            raise ValueError(
                f"{codes.shape[-1]} code frames cannot hold {length} samples "
                f"(expected {self.num_frames(length)} frames)"
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}); the input is corrupt")

    def bitrate(self, n_streams: int) -> float:
        """Bits per second when ``n_streams`` streams are sent (1.5 kbps per stream in ESC).

        Each code carries log2 of the code count (10 bits for 1024; 9.97 for FSQ's 1000 codes,
        which the bitstream stores in ``bits_per_code`` = 10-bit fields).
        """
        return n_streams * self.num_groups * math.log2(self.codebook_size) * self.frame_rate

    def streams_for_kbps(self, kbps: float) -> int:
        """Stream count for a bitrate; raises ValueError if it is not a whole number of streams.

        A request within 0.5 % of a stream count's bitrate selects it, so "9 kbps" names the six
        streams of a 1000-code FSQ (8.97 kbps) as it does ESC's 1024-entry codebooks.
        """
        per_stream = self.bitrate(1) / 1000
        streams = round(kbps / per_stream) if math.isfinite(kbps) else 0  # inf, nan: invalid
        off = abs(streams * per_stream - kbps)
        if streams < 1 or streams > self.max_streams or off > max(1e-6, KBPS_TOLERANCE * kbps):
            valid = ", ".join(f"{self.bitrate(s) / 1000:g}" for s in range(1, self.max_streams + 1))
            raise ValueError(
                f"--kbps {kbps:g} is not available: use a multiple of {per_stream:g} kbps up to "
                f"{self.bitrate(self.max_streams) / 1000:g} ({valid})"
            )
        return streams

    inference_precision: str = "fp32"

    def set_inference_precision(self, precision: str) -> Codec:
        """Choose the precision of :meth:`encode` / :meth:`decode`: "fp32" (default) or "bf16".

        bf16 runs the encoder and decoder under autocast; the STFT, the iSTFT and the codebook
        search stay in fp32 (ESC's distances are cosine similarities of 8-dim vectors, where bf16
        would change codes needlessly). Training precision is the Trainer's ``precision``.
        """
        self.inference_precision = check_precision(precision)
        return self

    def inference_autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast context for the chosen inference precision on ``device``."""
        dtype = PRECISIONS[self.inference_precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def forward(self, audio: Tensor, n_streams: int, bypass_quantizer: bool = False) -> CodecOutput:
        raise NotImplementedError

    def encode(self, audio: Tensor, n_streams: int) -> Tensor:
        raise NotImplementedError

    def decode(self, codes: Tensor, length: int) -> Tensor:
        raise NotImplementedError


# Relative gap between a requested and a nominal bitrate still taken as that bitrate.
KBPS_TOLERANCE = 0.005

# Inference precisions: name -> autocast dtype (None: plain fp32).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def check_precision(precision: str) -> str:
    """Return ``precision`` if it is a known inference precision, else raise a one-line error."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)} (fp32 is exact, "
            "bf16 is faster on CPUs with AVX512-BF16/AMX and on GPUs)"
        )
    return precision


CODECS: Registry = Registry("codec", Codec)
