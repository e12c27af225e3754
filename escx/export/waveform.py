"""The graphs of a waveform codec (DAC): convolutions on samples, a bottleneck quantizer.

A waveform codec pads its input to whole code frames and runs convolutions only, so its graphs
need none of the STFT codec's window grid: the size symbol is the number of code frames. They
take and return the same tensors as :class:`~escx.export.graphs.EncoderGraph` and
:class:`~escx.export.graphs.DecoderGraph` (a "window" here is one code frame), so the same
ONNX inputs and outputs are put around them (:mod:`escx.export.onnx_io`).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.codecs.waveform import DAC
from escx.export.quantizers import decode_streams


def waveform_geometry(codec: DAC) -> SimpleNamespace:
    """Samples per code frame; one frame per "window"."""
    frame = int(codec.hop_length)
    return SimpleNamespace(frame=frame, span=frame, frames_per_window=1)


class WaveformEncoderGraph(nn.Module):
    """Audio padded to whole frames (B, frame * n), its length () -> codes (B, streams, 1, n).

    Args:
        codec: an exportable copy of a :class:`~escx.codecs.waveform.DAC`.
    """

    def __init__(self, codec: DAC) -> None:
        super().__init__()
        self.codec = codec
        self.geometry = waveform_geometry(codec)

    def forward(self, padded: Tensor, length: Tensor) -> Tensor:
        codec = self.codec
        # The input is already whole frames: what DAC._pad gives. `length` is not needed (every
        # frame is real) but kept, so both codec families have the same graph inputs.
        latent = codec.encoder(padded[:, None, :]).unsqueeze(2)
        return codec.quantizer.encode([latent], codec.decoder, codec.max_streams)

    def encode(self, audio: Tensor) -> Tensor:
        """The whole encoder in PyTorch: (B, L) -> (B, streams, 1, ceil(L / frame))."""
        padded = F.pad(audio, (0, -audio.shape[-1] % self.geometry.frame))
        return self(padded, torch.tensor(audio.shape[-1]))


class WaveformDecoderGraph(nn.Module):
    """Codes of every stream (B, max_streams, 1, n), ``frames`` (), ``streams`` () -> audio
    (B, frame * n); streams past ``streams`` are left out.

    Args:
        codec: an exportable copy of a :class:`~escx.codecs.waveform.DAC`.
    """

    def __init__(self, codec: DAC) -> None:
        super().__init__()
        self.codec = codec
        self.geometry = waveform_geometry(codec)

    def forward(self, codes: Tensor, frames: Tensor, streams: Tensor) -> Tensor:
        codec = self.codec
        active = (torch.arange(codec.max_streams, device=codes.device) < streams).float()
        return decode_streams(codec.quantizer, codes, active, codec.decoder).float()

    def decode(self, codes: Tensor, length: int) -> Tensor:
        """The whole decoder in PyTorch: codes (B, k, 1, frames) -> audio (B, length)."""
        streams, frames = codes.shape[1], codes.shape[-1]
        padded = F.pad(codes, (0, 0, 0, 0, 0, self.codec.max_streams - streams))
        audio = self(padded, torch.tensor(frames), torch.tensor(streams))
        return audio[:, : min(length, frames * self.geometry.frame)]
