"""The STFT codec: complex STFT -> encoder -> quantizer (drives the decoder) -> iSTFT."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from escx.backbones.base import Decoder, Encoder
from escx.backbones.swin import SwinDecoder, SwinEncoder
from escx.codecs.base import CODECS, Codec, CodecOutput
from escx.quantizers.base import Quantizer
from escx.quantizers.cross_scale import CrossScaleRVQ
from escx.spectral import Framing, check_audio, make_stft


@CODECS.register
class STFTCodec(Codec):
    """Codec over the complex STFT composed of any encoder, decoder and quantizer.

    Defaults give ESC-Base (8,386,373 parameters). Inputs of any length are zero-padded to a
    whole number of 20 ms code frames and outputs trimmed back (the reference asserts instead).

    Args:
        encoder: maps (B, 2, F, T) to feature maps (default: ESC Swin encoder).
        decoder: maps the bottleneck back to a spectrum (default: ESC Swin decoder).
        quantizer: codes features and drives the decoder (default: CS-RVQ, 6 streams of 8 dims).
        sample_rate: audio sample rate (16 kHz).
        n_fft: STFT size (382 -> 192 bins).
        win_length: window in samples (20 ms).
        hop_length: hop in samples (5 ms).
        framing: "centered" (ESC: centred frames, overlap-add inverse) or "causal" (frames end
            with their own hop and the inverse keeps each frame's last hop; the causal ESC,
            :class:`escx.spectral.CausalSTFT`).
    """

    def __init__(
        self,
        encoder: Encoder | None = None,
        decoder: Decoder | None = None,
        quantizer: Quantizer | None = None,
        sample_rate: int = 16000,
        n_fft: int = 382,
        win_length: int = 320,
        hop_length: int = 80,
        framing: Framing = "centered",
    ) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else SwinEncoder()
        self.decoder = decoder if decoder is not None else SwinDecoder()
        self.quantizer = quantizer if quantizer is not None else CrossScaleRVQ()
        self.sample_rate = sample_rate
        block = hop_length * self.encoder.time_patch * self.quantizer.frames_per_code
        self.stft = make_stft(framing, n_fft, win_length, hop_length, block)
        self.framing = framing
        for part in (self.encoder, self.decoder):
            if part.freq_bins != self.stft.freq_bins:
                raise ValueError(
                    f"{type(part).__name__} expects {part.freq_bins} STFT bins but n_fft={n_fft} "
                    f"gives {self.stft.freq_bins}; set freq_bins = n_fft // 2 + 1"
                )
        self.quantizer.bind(self.encoder.feature_shapes, self.decoder.stage_shapes)
        self.max_streams = self.quantizer.max_streams
        self.num_groups = self.quantizer.num_groups
        self.codebook_size = self.quantizer.codebook_size
        self.bits_per_code = self.quantizer.bits_per_code
        self.frame_rate = sample_rate / block

    def num_frames(self, length: int) -> int:
        """Code frames for ``length`` samples."""
        return self.stft.padded_length(length) // self.stft.length_multiple

    def _analyse(self, audio: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = self.stft(self.stft.pad(audio))
        return spec, self.encoder(spec)

    def forward(self, audio: Tensor, n_streams: int, bypass_quantizer: bool = False) -> CodecOutput:
        """Training / evaluation forward pass.

        Args:
            audio: (B, L) waveform.
            n_streams: streams used (ignored when bypassing: pre-training uses all).
            bypass_quantizer: pre-training mode (docs/esc.md §13.4).

        Returns:
            :class:`CodecOutput` with (B, L) audio.
        """
        audio = check_audio(audio)
        spec, feats = self._analyse(audio)
        pred, q_out = self.quantizer(feats, self.decoder, n_streams, bypass=bypass_quantizer)
        # The patch grid drops the odd last STFT frame; align the target with the prediction.
        target = spec[..., : pred.shape[-1]]
        return CodecOutput(self.stft.inverse(pred, audio.shape[-1]), pred, target, q_out)

    @torch.no_grad()
    def encode(self, audio: Tensor, n_streams: int) -> Tensor:
        """Audio (B, L) or (L,) -> codes (B, n_streams, groups, frames) int64."""
        audio = check_audio(audio)
        with self.inference_autocast(audio.device):
            _, feats = self._analyse(audio)
            return self.quantizer.encode(feats, self.decoder, n_streams)

    @torch.no_grad()
    def decode(self, codes: Tensor, length: int) -> Tensor:
        """Codes (B, streams, groups, frames) -> audio (B, length)."""
        self.check_codes(codes, length)
        with self.inference_autocast(codes.device):
            pred = self.quantizer.decode(codes.long(), self.decoder)
        return self.stft.inverse(pred, length)


@CODECS.register
class ESC(STFTCodec):
    """ESC (Gu & Diao 2024): Swin backbone + CS-RVQ; ESC-Base by default, depth 4 for Large."""

    def __init__(
        self,
        depth: int = 2,
        codebook_dims: Sequence[int] = (8, 8, 8, 8, 8, 8),
        codebook_size: int = 1024,
    ) -> None:
        super().__init__(
            SwinEncoder(depth=depth),
            SwinDecoder(depth=depth),
            CrossScaleRVQ(codebook_dims=codebook_dims, codebook_size=codebook_size),
        )
