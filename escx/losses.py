"""Reconstruction losses: ESC's complex-STFT and multi-scale mel losses, plus terms from the wider
literature that learn phase and waveform (waveform L1, SI-SDR, magnitude-compressed complex
spectrum) and auraloss's MR-STFT.

Every loss is an ``nn.Module`` whose ``forward`` returns a scalar (mean over the batch). Its
``domain`` says what it compares: ``"spectrum"`` losses take the decoder's predicted spectrum and
the input's STFT, ``"audio"`` losses the reconstructed and the input waveform. The keys of
:data:`RECONSTRUCTION_LOSSES` are the names used in a ``loss_weights`` map and in logged metric
names (``train/loss/mel``). ESC's weights are in docs/esc.md §13.5: non-adversarial stft 1.0 and
mel 0.25; adversarial stft 0.0 and mel 15.0.
"""

from __future__ import annotations

from collections.abc import Sequence

import auraloss
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

from escx.mel import ESC_MEL_BANDS, ESC_MEL_WINDOWS, MultiScaleMel


def _check_same_shape(name: str, pred: Tensor, target: Tensor, ndim: int, layout: str) -> None:
    if pred.shape != target.shape or pred.dim() != ndim:
        raise ValueError(
            f"{name} expects prediction and target of the same shape {layout}, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}; trim the output to the input length"
        )


def power_law_compress(x: Tensor, power: float = 0.3, eps: float = 1e-10) -> Tensor:
    """Compress magnitudes elementwise while keeping signs: ``sign(x) * (|x| + eps) ** power``.

    Applied to the real and imaginary parts separately (docs/esc.md §13.5), not to the complex
    modulus.
    """
    return torch.sign(x) * (x.abs() + eps) ** power


def _as_channels(spec: Tensor) -> Tensor:
    """Complex (B, F, T) -> real (B, 2, F, T); a real (B, 2, F, T) passes through."""
    return torch.view_as_real(spec).movedim(-1, 1) if spec.is_complex() else spec


class ComplexSTFTLoss(nn.Module):
    """ESC's complex spectrum loss: MSE between power-law compressed real/imag parts.

    Args:
        power: compression exponent (ESC: 0.3).
        eps: added to ``|x|`` before the power (ESC: 1e-10).
    """

    domain = "spectrum"

    def __init__(self, power: float = 0.3, eps: float = 1e-10) -> None:
        super().__init__()
        self.power = power
        self.eps = eps

    def forward(self, pred_spec: Tensor, target_spec: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            pred_spec: decoder's predicted spectrum before the iSTFT, ``(B, 2, F, T)`` (real and
                imaginary parts as channels) or complex ``(B, F, T)``.
            target_spec: STFT of the input audio, same layout.

        Returns:
            Scalar: mean over batch, channels, frequency and time.
        """
        pred_spec, target_spec = _as_channels(pred_spec), _as_channels(target_spec)
        _check_same_shape("ComplexSTFTLoss", pred_spec, target_spec, 4, "(B, 2, F, T)")
        if pred_spec.shape[1] != 2:
            raise ValueError(
                f"ComplexSTFTLoss expects real and imaginary parts on dim 1 (B, 2, F, T), got "
                f"{tuple(pred_spec.shape)}"
            )
        # fp32: (|x| + 1e-10) ** 0.3 underflows in bf16/fp16.
        with torch.autocast(device_type=pred_spec.device.type, enabled=False):
            pred = power_law_compress(pred_spec.float(), self.power, self.eps)
            target = power_law_compress(target_spec.float(), self.power, self.eps)
            return F.mse_loss(pred, target)


class MultiScaleMelLoss(nn.Module):
    """ESC's multi-scale mel loss: per scale ``L1(mel) + L1(log10(clamp(mel, eps) ** 2))``.

    The terms are summed over the scales (docs/esc.md §13.5); each L1 is a mean over batch, bands
    and frames. ESC keeps the linear-magnitude term (``linear_weight=1``) on an HTK filterbank;
    DAC drops it (``linear_weight=0``) and uses librosa's Slaney filterbank (``mel_scale="slaney",
    mel_norm="slaney"``), otherwise the same 7 scales, clamp and square (docs/esc.md §18).

    Args:
        sample_rate: sampling rate in Hz.
        windows: STFT window sizes, one per scale.
        n_mels: mel bands, one per scale.
        linear_weight: weight of the linear-magnitude L1 term.
        log_weight: weight of the log-magnitude L1 term.
        clamp_eps: floor on mel magnitudes before the log.
        mel_scale: "htk" (ESC) or "slaney" (DAC).
        mel_norm: filterbank normalisation, None (ESC) or "slaney" (DAC).
    """

    domain = "audio"

    def __init__(
        self,
        sample_rate: int = 16000,
        windows: Sequence[int] = ESC_MEL_WINDOWS,
        n_mels: Sequence[int] = ESC_MEL_BANDS,
        linear_weight: float = 1.0,
        log_weight: float = 1.0,
        clamp_eps: float = 1e-5,
        mel_scale: str = "htk",
        mel_norm: str | None = None,
    ) -> None:
        super().__init__()
        self.mel = MultiScaleMel(sample_rate, windows, n_mels, mel_scale=mel_scale, norm=mel_norm)
        self.linear_weight = linear_weight
        self.log_weight = log_weight
        self.clamp_eps = clamp_eps

    def forward(self, pred_audio: Tensor, target_audio: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            pred_audio: reconstruction ``(B, L)``.
            target_audio: input audio ``(B, L)``.

        Returns:
            Scalar loss (float32).
        """
        _check_same_shape("MultiScaleMelLoss", pred_audio, target_audio, 2, "(B, L)")
        pred_mels = self.mel(pred_audio)
        # The target is data: keeping it out of the graph halves the backward pass (the STFT
        # backward dominates this loss's cost).
        with torch.set_grad_enabled(torch.is_grad_enabled() and target_audio.requires_grad):
            target_mels = self.mel(target_audio)
        loss = pred_mels[0].new_zeros(())
        for pred, target in zip(pred_mels, target_mels, strict=True):
            if self.linear_weight:
                loss = loss + self.linear_weight * F.l1_loss(pred, target)
            if self.log_weight:
                log_pred = pred.clamp(min=self.clamp_eps).pow(2).log10()
                log_target = target.clamp(min=self.clamp_eps).pow(2).log10()
                loss = loss + self.log_weight * F.l1_loss(log_pred, log_target)
        return loss


class MultiResolutionSTFTLoss(nn.Module):
    """Multi-resolution STFT loss (spectral convergence + log magnitude), backed by auraloss.

    The Parallel-WaveGAN / EnCodec style spectral loss, for codecs other than ESC. It uses
    linear-frequency STFTs only: auraloss's mel option needs librosa, which escx does not
    depend on (use :class:`MultiScaleMelLoss` for mel losses).

    Args:
        fft_sizes: FFT size per resolution.
        hop_sizes: hop size per resolution.
        win_lengths: window length per resolution.
        w_sc: weight of the spectral convergence term.
        w_log_mag: weight of the L1 log-magnitude term.
        w_lin_mag: weight of the L1 linear-magnitude term.
    """

    domain = "audio"

    def __init__(
        self,
        fft_sizes: Sequence[int] = (1024, 2048, 512),
        hop_sizes: Sequence[int] = (120, 240, 50),
        win_lengths: Sequence[int] = (600, 1200, 240),
        w_sc: float = 1.0,
        w_log_mag: float = 1.0,
        w_lin_mag: float = 0.0,
    ) -> None:
        super().__init__()
        if not len(fft_sizes) == len(hop_sizes) == len(win_lengths):
            raise ValueError(
                "MultiResolutionSTFTLoss needs as many hop_sizes and win_lengths as fft_sizes, got "
                f"{len(fft_sizes)}, {len(hop_sizes)}, {len(win_lengths)}"
            )
        if any(w > n for w, n in zip(win_lengths, fft_sizes, strict=True)):
            raise ValueError(
                f"MultiResolutionSTFTLoss win_lengths {tuple(win_lengths)} must not exceed "
                f"fft_sizes {tuple(fft_sizes)}"
            )
        self.loss = auraloss.freq.MultiResolutionSTFTLoss(
            fft_sizes=list(fft_sizes),
            hop_sizes=list(hop_sizes),
            win_lengths=list(win_lengths),
            w_sc=w_sc,
            w_log_mag=w_log_mag,
            w_lin_mag=w_lin_mag,
        )

    def forward(self, pred_audio: Tensor, target_audio: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            pred_audio: reconstruction ``(B, L)``.
            target_audio: input audio ``(B, L)``.

        Returns:
            Scalar loss (float32), averaged over the resolutions.
        """
        _check_same_shape("MultiResolutionSTFTLoss", pred_audio, target_audio, 2, "(B, L)")
        with torch.autocast(device_type=pred_audio.device.type, enabled=False):
            return self.loss(pred_audio.float()[:, None], target_audio.float()[:, None])


class CompressedComplexSpectrumLoss(nn.Module):
    """Magnitude-compressed complex spectrum loss (Braun & Tashev 2021, "A consolidated view of
    loss functions for supervised deep learning-based speech enhancement").

    The modulus is compressed and the phase kept, ``X_c = |X| ** power * exp(i * angle(X))``, and
    the loss mixes a complex and a magnitude-only MSE:
    ``complex_weight * |P_c - T_c|^2 + (1 - complex_weight) * (|P|^p - |T|^p)^2``, averaged over
    batch, bins and frames. Unlike ESC's loss, which compresses real and imaginary parts
    separately (so near-zero bins, whose compressed values change fastest, dominate the gradient),
    this one weighs each bin by its compressed level and still penalises phase errors.

    Args:
        power: compression exponent of the modulus (0.3 in the paper).
        complex_weight: share of the complex term (0.3 in the paper).
        eps: floor on the modulus before the power, which keeps gradients finite at silence.
    """

    domain = "spectrum"

    def __init__(self, power: float = 0.3, complex_weight: float = 0.3, eps: float = 1e-8) -> None:
        super().__init__()
        if not 0.0 <= complex_weight <= 1.0:
            raise ValueError(f"complex_weight must be in [0, 1], got {complex_weight}")
        self.power, self.complex_weight, self.eps = power, complex_weight, eps

    def forward(self, pred_spec: Tensor, target_spec: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            pred_spec: predicted spectrum ``(B, 2, F, T)`` (real, imaginary) or complex
                ``(B, F, T)``.
            target_spec: STFT of the input audio, same layout.

        Returns:
            Scalar loss (float32).
        """
        pred_spec, target_spec = _as_channels(pred_spec), _as_channels(target_spec)
        _check_same_shape(
            "CompressedComplexSpectrumLoss", pred_spec, target_spec, 4, "(B, 2, F, T)"
        )
        with torch.autocast(device_type=pred_spec.device.type, enabled=False):
            pred, target = self._compress(pred_spec.float()), self._compress(target_spec.float())
            complex_term = F.mse_loss(pred[0], target[0])
            magnitude_term = F.mse_loss(pred[1], target[1])
        return self.complex_weight * complex_term + (1 - self.complex_weight) * magnitude_term

    def _compress(self, spec: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 2, F, T) -> compressed spectrum (B, 2, F, T) and compressed modulus (B, F, T)."""
        modulus = spec.pow(2).sum(1).add(self.eps**2).sqrt()
        compressed = modulus.pow(self.power)
        # spec / modulus is the unit phasor; the eps floor keeps silent bins at a finite gradient.
        return spec * (compressed / modulus).unsqueeze(1), compressed


class WaveformL1Loss(nn.Module):
    """Mean absolute sample error, as in the time-domain terms of SoundStream/EnCodec-style codecs.

    It fixes the output's phase and level directly, which spectral losses alone learn slowly.
    """

    domain = "audio"

    def forward(self, pred_audio: Tensor, target_audio: Tensor) -> Tensor:
        """Scalar mean of ``|pred - target|`` over ``(B, L)`` (float32)."""
        _check_same_shape("WaveformL1Loss", pred_audio, target_audio, 2, "(B, L)")
        return F.l1_loss(pred_audio.float(), target_audio.float())


class SISDRLoss(nn.Module):
    """Negative scale-invariant SDR in dB (Le Roux et al. 2019), torchmetrics' implementation.

    Minimising it aligns the waveform up to a gain, the quantity the SI-SDR metric reports. Its
    value is about -SI-SDR, so it is negative once reconstructions are better than 0 dB.

    Args:
        zero_mean: remove each signal's mean first (the metric's convention).
    """

    domain = "audio"

    def __init__(self, zero_mean: bool = True) -> None:
        super().__init__()
        self.zero_mean = zero_mean

    def forward(self, pred_audio: Tensor, target_audio: Tensor) -> Tensor:
        """Scalar ``-mean(SI-SDR)`` over the batch of ``(B, L)`` signals (float32)."""
        _check_same_shape("SISDRLoss", pred_audio, target_audio, 2, "(B, L)")
        with torch.autocast(device_type=pred_audio.device.type, enabled=False):
            sisdr = scale_invariant_signal_distortion_ratio(
                pred_audio.float(), target_audio.float(), zero_mean=self.zero_mean
            )
        return -sisdr.mean()


# Loss-weight names (the keys of ``loss_weights``) -> loss classes.
RECONSTRUCTION_LOSSES: dict[str, type[nn.Module]] = {
    "stft": ComplexSTFTLoss,
    "mel": MultiScaleMelLoss,
    "mrstft": MultiResolutionSTFTLoss,
    "compressed_spectrum": CompressedComplexSpectrumLoss,
    "waveform": WaveformL1Loss,
    "sisdr": SISDRLoss,
}
