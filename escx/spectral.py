"""Complex STFT front end (docs/esc.md §2) that works for any input length.

The reference codec takes the one-sided complex STFT (n_fft 382, 20 ms Hann window, 5 ms hop,
centred, reflect padding) as a 2-channel image (B, 2, 192, T) and inverts the decoder's predicted
spectrum with the iSTFT. Its patch grid needs an even number of time patches, so it asserts on
many lengths and returns up to 159 samples too few. escx differs on purpose: the input is
zero-padded to a multiple of ``length_multiple`` (320 samples = 2 patches of 2 STFT hops) and the
output is trimmed back, so ``decode(encode(x))`` has exactly ``x``'s length. For lengths that are
already a multiple of 320 the spectra equal the reference's.

:class:`CausalSTFT` is the framing of the causal ESC (``framing: causal``): frame ``t`` ends where
hop ``t`` ends, so no frame reads a sample after its own hop, and the inverse keeps only the last
hop of each inverse frame (no overlap-add from later frames). Its window rises over the first
``win_length - hop_length`` samples and is flat over the last hop, so that kept hop is the signal
itself when the spectrum is exact.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn


def check_audio(audio: Tensor) -> Tensor:
    """Validate a waveform batch and return it as float (B, L).

    Args:
        audio: (L,) or (B, L) waveform.

    Raises:
        ValueError: for zero-length, wrongly shaped or non-finite audio.
    """
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2:
        raise ValueError(
            f"audio must have shape (L,) or (B, L), got {tuple(audio.shape)}; "
            "down-mix channels first"
        )
    if audio.shape[-1] == 0 or audio.shape[0] == 0:
        raise ValueError("audio is empty (zero samples); pass at least one sample")
    if not torch.isfinite(audio).all():
        raise ValueError("audio contains NaN or infinite samples; clean the input first")
    return audio if audio.is_floating_point() else audio.float()


class ComplexSTFT(nn.Module):
    """Audio <-> complex STFT image, padded to a whole number of code frames.

    Args:
        n_fft: FFT size; ``n_fft // 2 + 1`` frequency bins (382 -> 192).
        win_length: Hann window length in samples (320 = 20 ms at 16 kHz).
        hop_length: hop in samples (80 = 5 ms).
        length_multiple: inputs are zero-padded to a multiple of this (320 = one 20 ms code frame
            of 2 time patches x 2 hops), which keeps the patch grid even.
    """

    def __init__(
        self,
        n_fft: int = 382,
        win_length: int = 320,
        hop_length: int = 80,
        length_multiple: int = 320,
    ) -> None:
        super().__init__()
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.length_multiple = length_multiple
        # Periodic Hann, as torchaudio's Spectrogram uses; torch.stft centres it inside n_fft.
        # Not persistent: it is a constant, not a learned or configured value.
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    @property
    def freq_bins(self) -> int:
        """Number of one-sided frequency bins (192 for ESC)."""
        return self.n_fft // 2 + 1

    def padded_length(self, length: int) -> int:
        """Length after zero-padding to a whole number of ``length_multiple`` blocks (>= 1)."""
        return max(1, math.ceil(length / self.length_multiple)) * self.length_multiple

    def pad(self, audio: Tensor) -> Tensor:
        """Zero-pad (B, L) audio at the end to :meth:`padded_length`."""
        extra = self.padded_length(audio.shape[-1]) - audio.shape[-1]
        return nn.functional.pad(audio, (0, extra)) if extra else audio

    def forward(self, audio: Tensor) -> Tensor:
        """STFT of already padded audio.

        Args:
            audio: (B, L) waveform.

        Returns:
            (B, 2, F, T) real and imaginary parts, F = n_fft // 2 + 1, T = L // hop + 1.
        """
        with torch.autocast(device_type=audio.device.type, enabled=False):
            spec = torch.stft(
                audio.float(),
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window,
                center=True,
                pad_mode="reflect",
                normalized=False,
                onesided=True,
                return_complex=True,
            )
        return torch.view_as_real(spec).permute(0, 3, 1, 2)

    def inverse(self, spec: Tensor, length: int) -> Tensor:
        """iSTFT of a predicted spectrum.

        Args:
            spec: (B, 2, F, T) real and imaginary parts.
            length: number of output samples to return (at most ``T * hop``).

        Returns:
            (B, length) waveform.
        """
        with torch.autocast(device_type=spec.device.type, enabled=False):
            complex_spec = torch.view_as_complex(spec.float().permute(0, 2, 3, 1).contiguous())
            # The reference calls iSTFT without `length` and gets hop * (T - 1) samples; asking for
            # T * hop covers the padded input (the last hop is covered by the last frame only).
            audio = torch.istft(
                complex_spec,
                self.n_fft,
                self.hop_length,
                self.win_length,
                self.window,
                center=True,
                normalized=False,
                onesided=True,
                length=spec.shape[-1] * self.hop_length,
            )
        return audio[..., :length]


class CausalSTFT(ComplexSTFT):
    """Causal framing: frame ``t`` covers samples ``[hop (t + 1) - win, hop (t + 1))``.

    The analysis window rises as the first half of a Hann window over ``win - hop`` samples and is
    1 over the last hop; the window sits inside ``n_fft`` where :func:`torch.stft` puts it. The
    inverse takes the last hop of each frame's inverse FFT, where the window is 1, so output
    samples ``[hop t, hop (t + 1))`` depend on frame ``t`` alone: no look-ahead beyond the frame.
    A padded input of ``L`` samples gives ``L / hop`` frames (the centred framing gives one more,
    which the patch grid drops), so both framings give the codec the same patch grid.

    Args: as :class:`ComplexSTFT`.
    """

    def __init__(
        self,
        n_fft: int = 382,
        win_length: int = 320,
        hop_length: int = 80,
        length_multiple: int = 320,
    ) -> None:
        super().__init__(n_fft, win_length, hop_length, length_multiple)
        if not 0 < hop_length < win_length <= n_fft:
            raise ValueError(
                f"causal framing needs 0 < hop_length < win_length <= n_fft, got hop "
                f"{hop_length}, window {win_length}, n_fft {n_fft}"
            )
        rise = win_length - hop_length
        half = torch.sin(torch.pi * torch.arange(rise) / (2 * rise)) ** 2
        self.window = torch.cat([half, torch.ones(hop_length)])

    @property
    def history(self) -> int:
        """Samples before a frame's own hop that the frame reads (``win - hop``: 240)."""
        return self.win_length - self.hop_length

    def analyse(self, segment: Tensor) -> Tensor:
        """Spectra of the frames of a segment that starts ``history`` samples before a hop.

        Args:
            segment: (B, history + k * hop) samples.

        Returns:
            (B, 2, F, k): the frames whose hops are the segment's last ``k`` hops.
        """
        with torch.autocast(device_type=segment.device.type, enabled=False):
            frames = segment.float().unfold(-1, self.win_length, self.hop_length)
            left = (self.n_fft - self.win_length) // 2
            frames = nn.functional.pad(
                frames * self.window, (left, self.n_fft - self.win_length - left)
            )
            spec = torch.fft.rfft(frames, dim=-1)  # (B, k, F)
        return torch.view_as_real(spec).permute(0, 3, 2, 1)

    def forward(self, audio: Tensor) -> Tensor:
        """Causal STFT of already padded audio: (B, L) -> (B, 2, F, L // hop)."""
        return self.analyse(nn.functional.pad(audio, (self.history, 0)))

    def synthesise(self, spec: Tensor) -> Tensor:
        """The last hop of each frame's inverse: (B, 2, F, T) -> (B, T * hop) samples."""
        with torch.autocast(device_type=spec.device.type, enabled=False):
            complex_spec = torch.view_as_complex(spec.float().permute(0, 3, 2, 1).contiguous())
            frames = torch.fft.irfft(complex_spec, n=self.n_fft, dim=-1)  # (B, T, n_fft)
            stop = (self.n_fft - self.win_length) // 2 + self.win_length
            # The window is 1 over the kept hop: nothing to divide by.
            hops = frames[..., stop - self.hop_length : stop]
        return hops.reshape(spec.shape[0], -1)

    def inverse(self, spec: Tensor, length: int) -> Tensor:
        """(B, 2, F, T) -> (B, length) with ``length <= T * hop``."""
        return self.synthesise(spec)[..., :length]


FRAMINGS = {"centered": ComplexSTFT, "causal": CausalSTFT}
Framing = Literal["centered", "causal"]


def make_stft(
    framing: str, n_fft: int, win_length: int, hop_length: int, length_multiple: int
) -> ComplexSTFT:
    """The STFT front end of a framing: "centered" (ESC) or "causal" (:class:`CausalSTFT`)."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    return FRAMINGS[framing](n_fft, win_length, hop_length, length_multiple)
