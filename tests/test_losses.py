"""Tests for escx.mel (filterbanks, multi-scale mel) and escx.losses."""

from __future__ import annotations

import math

import pytest
import torch

from escx.losses import (
    RECONSTRUCTION_LOSSES,
    ComplexSTFTLoss,
    CompressedComplexSpectrumLoss,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    SISDRLoss,
    WaveformL1Loss,
    power_law_compress,
)
from escx.mel import ESC_MEL_BANDS, ESC_MEL_WINDOWS, MultiScaleMel, hz_to_mel, mel_filterbank

SR = 16000


def _noise(batch: int = 2, length: int = 4000, seed: int = 0, scale: float = 0.1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, length, generator=gen)


# ---------------------------------------------------------------- filterbank


def test_mel_scale_formulas() -> None:
    # HTK: 2595 log10(1 + f/700); 700 Hz -> 2595 log10(2). Slaney: linear 3 mel / 200 Hz to 1 kHz.
    assert hz_to_mel(torch.tensor(700.0)).item() == pytest.approx(2595 * math.log10(2))
    assert hz_to_mel(torch.tensor(1000.0), htk=False).item() == pytest.approx(15.0)
    assert hz_to_mel(torch.tensor(500.0), htk=False).item() == pytest.approx(7.5)


def test_single_band_filterbank_is_the_hand_computed_triangle() -> None:
    # One band over 0-8 kHz: rises from 0 Hz to the centre c (mel midpoint), falls to 8 kHz.
    fb = mel_filterbank(SR, n_fft=16, n_mels=1)
    assert fb.shape == (1, 9)
    mel_max = 2595 * math.log10(1 + 8000 / 700)
    c = 700 * (10 ** (mel_max / 2 / 2595) - 1)
    freqs = [i * 1000.0 for i in range(9)]
    expected = [f / c if f <= c else (8000 - f) / (8000 - c) for f in freqs]
    torch.testing.assert_close(fb[0], torch.tensor(expected), atol=1e-6, rtol=0)


@pytest.mark.parametrize("n_fft,n_mels", list(zip(ESC_MEL_WINDOWS, ESC_MEL_BANDS, strict=True)))
def test_filterbank_peaks_and_partition_of_unity(n_fft: int, n_mels: int) -> None:
    fb = mel_filterbank(SR, n_fft, n_mels)
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    assert fb.min() >= 0 and fb.max() <= 1 + 1e-6
    freqs = torch.linspace(0, SR // 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_max = 2595 * math.log10(1 + (SR / 2) / 700)
    mel_points = torch.linspace(0, mel_max, n_mels + 2, dtype=torch.float64)
    centres = 700 * (10 ** (mel_points / 2595) - 1)
    # Filter m peaks at one of the two bins around its centre frequency (asymmetric triangles).
    spacing = (SR / 2) / (n_fft // 2)
    below = torch.floor(centres[1:-1] / spacing).long()
    peak = fb.argmax(1)
    assert bool(((peak == below) | (peak == below + 1)).all())
    # Adjacent triangles share their edges, so between the first and the last centre the
    # filters sum to exactly 1 at every bin.
    inside = (freqs >= centres[1]) & (freqs <= centres[-2])
    torch.testing.assert_close(fb.sum(0)[inside], torch.ones(int(inside.sum())), atol=1e-5, rtol=0)


def test_filterbank_respects_frequency_range() -> None:
    fb = mel_filterbank(SR, 512, 40, f_min=300, f_max=4000)
    freqs = torch.linspace(0, SR // 2, 257)
    outside = (freqs <= 300) | (freqs >= 4000)
    assert fb[:, outside].abs().max() == 0
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(SR, 512, 40, f_max=9000)


# ---------------------------------------------------------------- multi-scale mel


def test_multiscale_mel_shapes_and_buffers() -> None:
    mel = MultiScaleMel()
    x = _noise(length=4000)
    outs = mel(x)
    assert [o.shape for o in outs] == [
        (2, n, 4000 // (w // 4) + 1) for w, n in zip(ESC_MEL_WINDOWS, ESC_MEL_BANDS, strict=True)
    ]
    assert all(o.dtype == torch.float32 and o.min() >= 0 for o in outs)
    assert mel.state_dict() == {}  # windows and filterbanks are rebuilt, not checkpointed


def test_multiscale_mel_matches_direct_formula() -> None:
    mel = MultiScaleMel(windows=(256,), n_mels=(40,))
    x = _noise(batch=1, length=2000)
    spec = torch.stft(
        x,
        256,
        64,
        window=torch.hann_window(256, periodic=True),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    ).abs()
    expected = torch.einsum("mf,bft->bmt", mel_filterbank(SR, 256, 40), spec)
    torch.testing.assert_close(mel(x)[0], expected)


def test_multiscale_mel_puts_a_tone_in_the_right_band() -> None:
    t = torch.arange(8000) / SR
    tone = torch.sin(2 * math.pi * 1000 * t)[None]
    mel = MultiScaleMel(windows=(1024,), n_mels=(80,))
    band = mel(tone)[0].mean(-1).argmax().item()
    assert mel_filterbank(SR, 1024, 80)[:, 64].argmax().item() == band  # bin 64 = 1000 Hz


def test_multiscale_mel_is_float32_under_autocast() -> None:
    mel = MultiScaleMel()
    x = _noise()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = mel(x.bfloat16())
    assert all(o.dtype == torch.float32 for o in outs)


def test_multiscale_mel_rejects_bad_input() -> None:
    mel = MultiScaleMel()
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        mel(torch.zeros(2, 1, 4000))
    with pytest.raises(ValueError, match="longer clips"):
        mel(torch.zeros(2, 1000))
    with pytest.raises(ValueError, match="one n_mels per window"):
        MultiScaleMel(windows=(32, 64), n_mels=(5,))


# ---------------------------------------------------------------- complex STFT loss


def test_power_law_compression_formula() -> None:
    x = torch.tensor([8.0, -8.0, 0.0, 1.0])
    expected = torch.tensor([8**0.3, -(8**0.3), 0.0, 1.0])
    torch.testing.assert_close(power_law_compress(x), expected)


def test_complex_stft_loss_hand_computed() -> None:
    target = torch.zeros(1, 2, 3, 4)
    pred = torch.zeros(1, 2, 3, 4)
    pred[0, 0, 0, 0] = 8.0  # real part: compressed to 8**0.3
    pred[0, 1, 2, 3] = -1.0  # imaginary part: compressed to -1
    expected = ((8**0.3) ** 2 + 1.0) / pred.numel()
    assert ComplexSTFTLoss()(pred, target).item() == pytest.approx(expected, rel=1e-5)


def test_complex_stft_loss_zero_positive_and_gradients() -> None:
    loss = ComplexSTFTLoss()
    target = torch.randn(2, 2, 8, 5)
    assert loss(target.clone(), target).item() == 0.0
    pred = (target + 0.1 * torch.randn_like(target)).requires_grad_()
    value = loss(pred, target)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_complex_stft_loss_accepts_complex_spectra() -> None:
    a, b = torch.randn(2, 2, 8, 5), torch.randn(2, 2, 8, 5)
    as_complex = [torch.complex(x[:, 0], x[:, 1]) for x in (a, b)]
    loss = ComplexSTFTLoss()
    assert loss(*as_complex).item() == pytest.approx(loss(a, b).item(), rel=1e-6)


def test_complex_stft_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ComplexSTFTLoss()(torch.zeros(1, 2, 8, 5), torch.zeros(1, 2, 8, 6))
    with pytest.raises(ValueError, match=r"\(B, 2, F, T\)"):
        ComplexSTFTLoss()(torch.zeros(1, 3, 8, 5), torch.zeros(1, 3, 8, 5))


# ---------------------------------------------------------------- multi-scale mel loss


def test_mel_loss_zero_for_identical_and_positive_with_gradients() -> None:
    loss = MultiScaleMelLoss()
    target = _noise()
    assert loss(target.clone(), target).item() == 0.0
    pred = (target + 0.01 * _noise(seed=1)).requires_grad_()
    value = loss(pred, target)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_mel_loss_log_term_of_a_gain_change() -> None:
    # Doubling the signal doubles every mel magnitude, so each scale's log term is
    # |log10(4 m^2) - log10(m^2)| = 2 log10(2), summed over the 7 scales (no value clamps here).
    target = _noise(scale=1.0)
    log_only = MultiScaleMelLoss(linear_weight=0.0)(2 * target, target)
    assert log_only.item() == pytest.approx(7 * 2 * math.log10(2), rel=1e-4)


def test_mel_loss_is_the_weighted_sum_of_its_terms() -> None:
    target, pred = _noise(), _noise(seed=1)
    mel = MultiScaleMel()
    linear = sum((p - t).abs().mean() for p, t in zip(mel(pred), mel(target), strict=True))
    log = MultiScaleMelLoss(linear_weight=0.0)(pred, target)
    full = MultiScaleMelLoss(linear_weight=2.0, log_weight=0.5)(pred, target)
    assert full.item() == pytest.approx(2.0 * linear.item() + 0.5 * log.item(), rel=1e-5)


def test_mel_loss_under_bf16_autocast() -> None:
    target, pred = _noise(), _noise(seed=1)
    ref = MultiScaleMelLoss()(pred, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = MultiScaleMelLoss()(pred.bfloat16(), target)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(ref.item(), rel=0.05)


def test_mel_loss_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        MultiScaleMelLoss()(torch.zeros(1, 4000), torch.zeros(1, 3999))


# ---------------------------------------------------------------- auraloss MR-STFT


def test_mrstft_loss_zero_positive_and_gradients() -> None:
    loss = MultiResolutionSTFTLoss()
    target = _noise(length=8000)
    assert loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-5)
    pred = (target + 0.05 * _noise(length=8000, seed=1)).requires_grad_()
    value = loss(pred, target)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_mrstft_loss_validates_arguments() -> None:
    with pytest.raises(ValueError, match="as many"):
        MultiResolutionSTFTLoss(fft_sizes=(512,), hop_sizes=(128, 64), win_lengths=(512,))
    with pytest.raises(ValueError, match="must not exceed"):
        MultiResolutionSTFTLoss(fft_sizes=(256,), hop_sizes=(64,), win_lengths=(512,))
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        MultiResolutionSTFTLoss()(torch.zeros(1, 1, 8000), torch.zeros(1, 1, 8000))


def test_reconstruction_loss_names() -> None:
    assert RECONSTRUCTION_LOSSES == {
        "stft": ComplexSTFTLoss,
        "mel": MultiScaleMelLoss,
        "mrstft": MultiResolutionSTFTLoss,
        "compressed_spectrum": CompressedComplexSpectrumLoss,
        "waveform": WaveformL1Loss,
        "sisdr": SISDRLoss,
    }
    for cls in RECONSTRUCTION_LOSSES.values():
        assert cls.domain in ("spectrum", "audio")


def test_waveform_l1_is_mean_absolute_error() -> None:
    target = _noise(length=800)
    pred = target + 0.25
    assert WaveformL1Loss()(pred, target).item() == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        WaveformL1Loss()(pred[:, :-1], target)


def test_sisdr_loss_is_minus_sisdr_and_ignores_gain() -> None:
    target = _noise(length=8000)
    noisy = target + 0.1 * _noise(length=8000, seed=1)
    loss = SISDRLoss()
    # 0.1 x noise of the same power: SI-SDR close to 20 dB, so the loss is close to -20.
    assert loss(noisy, target).item() == pytest.approx(-20.0, abs=1.0)
    assert loss(3.0 * noisy, target).item() == pytest.approx(loss(noisy, target).item(), abs=1e-3)
    pred = noisy.clone().requires_grad_()
    loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_compressed_spectrum_loss_sees_phase_and_level() -> None:
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, 2, 16, 10, generator=generator)
    loss = CompressedComplexSpectrumLoss()
    assert loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    # Same magnitudes, opposite phase: only the complex part (weight 0.3) is non-zero.
    flipped = loss(-target, target).item()
    magnitude_only = CompressedComplexSpectrumLoss(complex_weight=0.0)(-target, target).item()
    assert flipped > 0.1 and magnitude_only == pytest.approx(0.0, abs=1e-6)
    # Silent prediction: finite gradients despite the zero modulus.
    silent = torch.zeros_like(target, requires_grad=True)
    loss(silent, target).backward()
    assert torch.isfinite(silent.grad).all()
    with pytest.raises(ValueError, match="complex_weight"):
        CompressedComplexSpectrumLoss(complex_weight=1.5)
