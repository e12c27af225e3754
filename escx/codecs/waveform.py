"""Waveform-domain codecs: a convolutional encoder on the raw samples, any bottleneck quantizer,
a transposed-convolution decoder back to samples. :class:`DAC` is the Descript Audio Codec
(Kumar et al. 2023) at 16 kHz; docs/esc.md §18 has its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils import parametrize

from escx.backbones.base import FeatureShape
from escx.backbones.dac import DACDecoder, DACEncoder
from escx.codecs.base import CODECS, Codec, CodecOutput
from escx.quantizers.base import Quantizer
from escx.quantizers.factorized import FactorizedRVQ
from escx.spectral import check_audio


@CODECS.register
class DAC(Codec):
    """DAC: Snake conv encoder, factorized residual VQ, transposed-conv decoder, on waveforms.

    Defaults give the released 16 kHz model: 12 streams of 0.5 kbps (6 kbps), 50 frames/s,
    74,175,906 parameters counting the weight-norm gains (74,141,697 without). Inputs of any
    length are zero-padded to whole code frames and outputs trimmed back, so output length equals
    input length (DAC's own code returns 8 samples short at 16 kHz).

    Args:
        encoder_dim: width of the encoder's first convolution, doubled per block (64).
        encoder_rates: encoder strides (2, 4, 5, 8: 320 samples per latent frame at 16 kHz).
        latent_dim: latent width (None: ``encoder_dim * 2 ** len(encoder_rates)``, 1024).
        decoder_dim: width of the decoder's first convolution, halved per block (1536).
        decoder_rates: decoder upsampling factors; their product must equal the encoder's.
        quantizer: a bottleneck quantizer over the latent (default: DAC's FactorizedRVQ, 12
            streams of 1024 x 8 codes).
        sample_rate: audio sample rate (16 kHz).
    """

    family = "waveform"
    spectrum_output = False

    def __init__(
        self,
        encoder_dim: int = 64,
        encoder_rates: Sequence[int] = (2, 4, 5, 8),
        latent_dim: int | None = None,
        decoder_dim: int = 1536,
        decoder_rates: Sequence[int] = (8, 5, 4, 2),
        quantizer: Quantizer | None = None,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        latent_dim = encoder_dim * 2 ** len(encoder_rates) if latent_dim is None else latent_dim
        self.encoder = DACEncoder(encoder_dim, encoder_rates, latent_dim)
        self.decoder = DACDecoder(latent_dim, decoder_dim, decoder_rates)
        if self.encoder.hop_length != self.decoder.hop_length:
            raise ValueError(
                f"encoder_rates {list(encoder_rates)} downsample {self.encoder.hop_length}x but "
                f"decoder_rates {list(decoder_rates)} upsample {self.decoder.hop_length}x; make "
                "their products equal"
            )
        self.quantizer = quantizer if quantizer is not None else FactorizedRVQ()
        # The decoder has no stages a cross-scale quantizer could refine: bottleneck only.
        self.quantizer.bind([FeatureShape(latent_dim, 1)], [])
        self.sample_rate = sample_rate
        self.hop_length = self.encoder.hop_length * self.quantizer.frames_per_code
        self.max_streams = self.quantizer.max_streams
        self.num_groups = self.quantizer.num_groups
        self.codebook_size = self.quantizer.codebook_size
        self.bits_per_code = self.quantizer.bits_per_code
        self.frame_rate = sample_rate / self.hop_length

    def _pad(self, audio: Tensor) -> Tensor:
        """(B, L) -> (B, 1, hop * num_frames(L)): zeros at the end, to whole code frames."""
        extra = self.num_frames(audio.shape[-1]) * self.hop_length - audio.shape[-1]
        return F.pad(audio, (0, extra)).unsqueeze(1)

    def _analyse(self, audio: Tensor) -> list[Tensor]:
        # The bottleneck as a (B, C, 1, T) feature map: one "row", as quantizers expect.
        return [self.encoder(self._pad(audio)).unsqueeze(2)]

    def forward(self, audio: Tensor, n_streams: int, bypass_quantizer: bool = False) -> CodecOutput:
        """Training / evaluation forward pass.

        Args:
            audio: (B, L) waveform.
            n_streams: streams used (in training, the quantizer's per-sample dropout may use
                fewer for some samples).
            bypass_quantizer: pre-training: the quantizer's projections without codebooks.

        Returns:
            :class:`CodecOutput` with (B, L) audio and no spectrum.
        """
        audio = check_audio(audio)
        feats = self._analyse(audio)
        out, q_out = self.quantizer(feats, self.decoder, n_streams, bypass=bypass_quantizer)
        return CodecOutput(out[..., : audio.shape[-1]], quantizer=q_out)

    @torch.no_grad()
    def encode(self, audio: Tensor, n_streams: int) -> Tensor:
        """Audio (B, L) or (L,) -> codes (B, n_streams, 1, frames) int64."""
        audio = check_audio(audio)
        # Weight norm computes each weight once per call instead of once per use.
        with parametrize.cached(), self.inference_autocast(audio.device):
            return self.quantizer.encode(self._analyse(audio), self.decoder, n_streams)

    @torch.no_grad()
    def decode(self, codes: Tensor, length: int) -> Tensor:
        """Codes (B, streams, 1, frames) -> audio (B, length)."""
        self.check_codes(codes, length)
        with parametrize.cached(), self.inference_autocast(codes.device):
            audio = self.quantizer.decode(codes.long(), self.decoder)
        return audio[..., :length].float()
