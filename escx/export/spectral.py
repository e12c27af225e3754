"""The STFT and inverse STFT of :class:`escx.spectral.ComplexSTFT` in operations ONNX has.

``torch.istft`` has no ONNX export, and ``torch.stft`` exports only to ONNX's ``STFT`` operator,
which ONNX Runtime computes for ESC's 382-point (not a power of two) transform with a naive loop.
Both directions are written here as what they are, linear maps with a fixed basis:

* analysis: the windowed DFT of every frame is one strided 1-D convolution whose kernel holds the
  windowed cosines and sines (the window's zero taps are left out);
* synthesis: the one-sided inverse DFT of every frame, windowed, is one matrix product; the frames
  are overlap-added by shifting and summing (the window spans a whole number of hops, 320 = 4 x
  80 for ESC) and divided by the overlap-added squared window, as ``torch.istft`` does.

Same numerics as escx's up to float rounding: the bases are computed in float64 and rounded once
to float32, so outputs differ from PyTorch's FFT by about 1e-7 relative.

Both take an optional per-frame validity mask. The exported graphs pad their time grid to a
whole number of attention windows (:mod:`escx.export.graphs`); the mask makes the padded frames
count for nothing, exactly as if the grid ended where the input does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from escx.spectral import ComplexSTFT


def _window_taps(stft: ComplexSTFT) -> tuple[int, torch.Tensor]:
    """(offset of the window inside an n_fft frame, the window (win_length,) in float64)."""
    window = torch.hann_window(stft.win_length, dtype=torch.float64)
    return (stft.n_fft - stft.win_length) // 2, window


def check_geometry(stft: ComplexSTFT) -> None:
    """Raise ValueError unless the window spans a whole number of hops (overlap-add by shifts)."""
    if stft.win_length % stft.hop_length or stft.win_length > stft.n_fft:
        raise ValueError(
            f"the STFT window ({stft.win_length} samples) must be a whole number of hops "
            f"({stft.hop_length}) and fit in n_fft ({stft.n_fft}) to be exported"
        )


class AnalysisSTFT(nn.Module):
    """``ComplexSTFT.forward`` as a strided convolution.

    Args:
        stft: the codec's STFT (its sizes are copied; it is not kept).
    """

    def __init__(self, stft: ComplexSTFT) -> None:
        super().__init__()
        check_geometry(stft)
        self.n_fft, self.hop, self.win = stft.n_fft, stft.hop_length, stft.win_length
        bins = stft.freq_bins
        offset, window = _window_taps(stft)
        # Frame sample j sits at tap m = offset + j of torch.stft's centred, zero-padded window.
        m = torch.arange(self.win, dtype=torch.float64) + offset
        k = torch.arange(bins, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(k, m) / self.n_fft
        kernel = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2 F, win)
        self.register_buffer("kernel", kernel.float()[:, None, :], persistent=False)

    def frames_from(self, signal: Tensor) -> Tensor:
        """Spectra of frames of an already centred signal.

        Args:
            signal: (B, N) samples; frame t covers ``signal[hop * t : hop * t + win]``.

        Returns:
            (B, 2, F, (N - win) // hop + 1) real and imaginary parts.
        """
        spec = F.conv1d(signal[:, None, :], self.kernel, stride=self.hop)
        b, _, t = spec.shape
        return spec.view(b, 2, -1, t)

    def forward(self, audio: Tensor) -> Tensor:
        """Same as ``ComplexSTFT.forward`` (centred, reflect padding).

        Args:
            audio: (B, L) padded audio, L > n_fft // 2.

        Returns:
            (B, 2, F, L // hop + 1).
        """
        half = self.win // 2
        # torch.stft reflects n_fft // 2 samples; only the window's taps are read, so reflecting
        # win // 2 (a whole number of hops when win is an even number of hops) is enough.
        signal = F.pad(audio[:, None, :], (half, half), mode="reflect")[:, 0]
        return self.frames_from(signal)

    def padded_grid(self, audio: Tensor, length: Tensor | int, frames: int) -> Tensor:
        """The spectra of ``audio[:, :length]`` (reflected at its end), on a grid of ``frames``.

        ``audio`` holds at least ``hop * frames`` samples, zero beyond the real input. The frames
        that reach past ``length`` see the signal reflected at ``length``, as ``torch.stft`` of the
        first ``length`` samples would; frames past that are garbage the caller masks.

        Args:
            audio: (B, N) samples.
            length: the real (padded-to-whole-code-frames) length, a tensor or int.
            frames: number of frames returned.

        Returns:
            (B, 2, F, frames).
        """
        half = self.win // 2
        positions = torch.arange(self.hop * (frames - 1) + self.win, device=audio.device) - half
        index = positions.abs()
        index = torch.where(index >= length, 2 * (length - 1) - index, index)
        index = index.clamp(0, audio.shape[-1] - 1)
        return self.frames_from(audio[:, index])


class SynthesisISTFT(nn.Module):
    """``ComplexSTFT.inverse`` (``torch.istft``, centred, ``length = T * hop``) as a matrix product
    and shifted sums.

    Args:
        stft: the codec's STFT (its sizes are copied; it is not kept).
    """

    def __init__(self, stft: ComplexSTFT) -> None:
        super().__init__()
        check_geometry(stft)
        self.n_fft, self.hop, self.win = stft.n_fft, stft.hop_length, stft.win_length
        self.taps = self.win // self.hop  # hops a frame spans
        bins = stft.freq_bins
        offset, window = _window_taps(stft)
        m = torch.arange(self.win, dtype=torch.float64) + offset
        k = torch.arange(bins, dtype=torch.float64)
        angle = 2 * math.pi * torch.outer(k, m) / self.n_fft
        # One-sided inverse DFT: bins other than DC and (even n_fft) Nyquist count twice; the
        # imaginary parts of DC and Nyquist are ignored, as a c2r transform ignores them.
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = 1.0
        if self.n_fft % 2 == 0:
            weight[-1] = 1.0
        sines = -torch.sin(angle) * weight
        sines[0] = 0.0
        if self.n_fft % 2 == 0:
            sines[-1] = 0.0
        basis = torch.cat([torch.cos(angle) * weight, sines]) * window / self.n_fft  # (2 F, win)
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer("window_sq", (window**2).float(), persistent=False)

    def _overlap_add(self, frames: Tensor) -> Tensor:
        """(B, T, win) frames -> (B, T * hop) samples 0..T*hop-1 of the centred signal.

        Frame t covers samples ``hop * t - win / 2 ... hop * t + win / 2 - 1``: its block q of
        ``hop`` samples lands on hop ``t - taps / 2 + q``.
        """
        b, t, _ = frames.shape
        blocks = frames.reshape(b, t, self.taps, self.hop)
        total = None
        for q in range(self.taps):
            shifted = F.pad(blocks[:, :, q], (0, 0, q, self.taps - 1 - q))  # (B, T + taps - 1, hop)
            total = shifted if total is None else total + shifted
        lead = self.taps // 2
        return total[:, lead : lead + t].reshape(b, t * self.hop)

    def forward(self, spec: Tensor, length: int | None = None, valid: Tensor | None = None):
        """Inverse STFT.

        Args:
            spec: (B, 2, F, T) real and imaginary parts.
            length: samples returned (at most ``T * hop``; default all ``T * hop``).
            valid: optional (T,) 0/1 float mask; frames at 0 are left out, as if the spectrum
                ended before them.

        Returns:
            (B, length) waveform.
        """
        b, _, bins, t = spec.shape
        coefficients = spec.float().reshape(b, 2 * bins, t).transpose(1, 2)  # (B, T, 2 F)
        frames = coefficients @ self.basis  # (B, T, win)
        weights = self.window_sq.expand(1, t, self.win)
        if valid is not None:
            frames = frames * valid[None, :, None]
            weights = weights * valid[None, :, None]
        audio = self._overlap_add(frames) / self._overlap_add(weights)
        return audio if length is None else audio[:, :length]
