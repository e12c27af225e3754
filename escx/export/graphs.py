"""The exported graphs: audio -> codes of every stream, codes of the first k streams -> audio.

Both graphs run escx's straightforward path (plain PyTorch layers; the fast path's fused and
native kernels have no ONNX form) on a copy of the codec, with the three changes an ONNX graph
with symbolic sizes needs:

* the STFT and inverse STFT as convolutions and matrix products (:mod:`escx.export.spectral`);
* the time grid padded to whole attention windows with a mask of the real columns
  (:mod:`escx.export.swin`);
* codebook search in one block and decoding with a stream mask (:mod:`escx.export.quantizers`).

Symbolic sizes stay simple on purpose: every size inside a graph is a multiple of one symbol
(the number of attention windows along time), so ``torch.export`` proves the reshapes without
guards. Input padding follows escx: audio is zero-padded to whole code frames.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.backbones.swin import SwinDecoder, SwinEncoder
from escx.backbones.swin_layers import SwinStage
from escx.codecs.base import Codec
from escx.codecs.stft_codec import STFTCodec
from escx.export.quantizers import decode_streams, unchunked_codebooks, unsupported_quantizer
from escx.export.spectral import AnalysisSTFT, SynthesisISTFT
from escx.export.swin import MaskedSwinDecoder, encode_features


class UnsupportedCodec(ValueError):
    """A codec (or a part of it) that has no exportable form; the message names the part."""


def unsupported_part(codec: Codec) -> str | None:
    """The first part of ``codec`` that cannot be exported, in words, or None."""
    from escx.codecs.waveform import DAC

    if type(codec) is DAC:
        return unsupported_quantizer(codec.quantizer)
    if not isinstance(codec, STFTCodec):
        return f"codec {type(codec).__name__} (exportable: STFTCodec, ESC and DAC)"
    if type(codec.encoder) is not SwinEncoder:
        return f"encoder {type(codec.encoder).__name__} (exportable: SwinEncoder)"
    if type(codec.decoder) is not SwinDecoder:
        return f"decoder {type(codec.decoder).__name__} (exportable: SwinDecoder)"
    reason = unsupported_quantizer(codec.quantizer)
    if reason:
        return reason
    windows = {m.window for m in codec.modules() if isinstance(m, SwinStage)}
    per_frame = codec.quantizer.frames_per_code
    if len(windows) != 1 or next(iter(windows)) % per_frame:
        return (
            f"Swin windows {sorted(windows)} (exportable: one window size that is a multiple of "
            f"the {per_frame} time patches per code frame)"
        )
    stft = codec.stft
    if stft.win_length % stft.hop_length or stft.win_length > stft.n_fft:
        return (
            f"STFT window {stft.win_length} (exportable: a whole number of {stft.hop_length} hops)"
        )
    return None


def graphs_of(copied: Codec) -> tuple[nn.Module, nn.Module]:
    """The encoder and decoder graphs of an exportable copy (:func:`exportable_copy`)."""
    if isinstance(copied, STFTCodec):
        return EncoderGraph(copied), DecoderGraph(copied)
    from escx.export.waveform import WaveformDecoderGraph, WaveformEncoderGraph

    return WaveformEncoderGraph(copied), WaveformDecoderGraph(copied)


def exportable_copy(codec: Codec) -> Codec:
    """A fp32 eval-mode copy of ``codec`` prepared for export.

    Raises:
        UnsupportedCodec: naming the part that cannot be exported.
    """
    reason = unsupported_part(codec)
    if reason:
        raise UnsupportedCodec(f"its {reason} has no ONNX export")
    copied = copy.deepcopy(codec).float().eval().set_inference_precision("fp32")
    for parameter in copied.parameters():
        parameter.requires_grad_(False)
    unchunked_codebooks(copied)
    return copied


class _Geometry:
    """Sizes shared by the two graphs, from the codec."""

    def __init__(self, codec: STFTCodec) -> None:
        self.frame = codec.stft.length_multiple  # samples per code frame (320)
        self.patches = codec.quantizer.frames_per_code  # time patches per code frame (2)
        self.window = codec.encoder.pre_nn.window  # time patches per attention window (4)
        self.frames_per_window = self.window // self.patches  # code frames per window (2)
        self.span = self.frame * self.frames_per_window  # samples per window (640)
        self.stft_per_patch = codec.encoder.time_patch  # STFT frames per time patch (2)

    def valid(self, windows, frames, device: torch.device) -> Tensor:
        """(windows * window,) 0/1 float mask of the time patches of ``frames`` real frames."""
        return (torch.arange(windows * self.window, device=device) < frames * self.patches).float()


class EncoderGraph(nn.Module):
    """The encoder's graph: audio padded to whole attention windows -> codes of every stream.

    Inputs: ``padded`` (B, span * n) float32, the audio zero-padded to a whole number ``n`` of
    windows (``span`` samples each: 640 for ESC), and ``length`` () int64, the audio's length
    before that padding. Output: (B, max_streams, groups, n * frames_per_window) int64 codes,
    of which the first ``ceil(length / frame)`` frames are escx's codes. The writer puts the
    padding in front and the cut behind (:mod:`escx.export.writer`); :meth:`encode` does both in
    PyTorch.

    Args:
        codec: an exportable copy (:func:`exportable_copy`).
    """

    def __init__(self, codec: STFTCodec) -> None:
        super().__init__()
        self.codec = codec
        self.analysis = AnalysisSTFT(codec.stft)
        self.geometry = _Geometry(codec)

    def forward(self, padded: Tensor, length: Tensor) -> Tensor:
        g, codec = self.geometry, self.codec
        windows = padded.shape[-1] // g.span  # the only size symbol inside the graph
        # The real frame count is a value, not a size, so sizes stay multiples of `windows`.
        frames = (length + g.frame - 1) // g.frame
        stft_frames = windows * g.window * g.stft_per_patch
        spec = self.analysis.padded_grid(padded, frames * g.frame, stft_frames)
        valid = g.valid(windows, frames, padded.device)
        feats = encode_features(codec.encoder, spec, valid)
        view = MaskedSwinDecoder(codec.decoder, valid)
        return codec.quantizer.encode(feats, view, codec.max_streams)

    def encode(self, audio: Tensor) -> Tensor:
        """The whole encoder in PyTorch: (B, L) -> (B, max_streams, groups, ceil(L / frame))."""
        g, length = self.geometry, audio.shape[-1]
        padded = F.pad(audio, (0, -length % g.span))
        codes = self(padded, torch.tensor(length))
        return codes[..., : -(-length // g.frame)]


class DecoderGraph(nn.Module):
    """The decoder's graph: codes of every stream on whole windows -> audio on whole windows.

    Inputs: ``codes`` (B, max_streams, groups, m * frames_per_window) int64, the first
    ``streams`` streams and ``frames`` frames real and the rest any valid code (zeros),
    ``frames`` () and ``streams`` () int64. Output: (B, span * m) float32 audio whose first
    ``frames * frame`` samples are escx's decode. The writer pads the codes in front and cuts
    the audio to the requested length behind; :meth:`decode` does both in PyTorch.

    Args:
        codec: an exportable copy (:func:`exportable_copy`).
    """

    def __init__(self, codec: STFTCodec) -> None:
        super().__init__()
        self.codec = codec
        self.synthesis = SynthesisISTFT(codec.stft)
        self.geometry = _Geometry(codec)

    def forward(self, codes: Tensor, frames: Tensor, streams: Tensor) -> Tensor:
        g, codec = self.geometry, self.codec
        windows = codes.shape[-1] // g.frames_per_window
        active = (torch.arange(codec.max_streams, device=codes.device) < streams).float()
        valid = g.valid(windows, frames, codes.device)
        view = MaskedSwinDecoder(codec.decoder, valid)
        spec = decode_streams(codec.quantizer, codes, active, view)
        return self.synthesis(spec, None, valid.repeat_interleave(g.stft_per_patch))

    def decode(self, codes: Tensor, length: int) -> Tensor:
        """The whole decoder in PyTorch: codes (B, k, groups, frames) -> audio (B, length)."""
        g, codec = self.geometry, self.codec
        streams, frames = codes.shape[1], codes.shape[-1]
        padded = F.pad(
            codes, (0, -frames % g.frames_per_window, 0, 0, 0, codec.max_streams - streams)
        )
        audio = self(padded, torch.tensor(frames), torch.tensor(streams))
        return audio[:, : min(length, frames * g.frame)]
