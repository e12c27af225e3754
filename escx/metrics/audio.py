"""Speech-quality metrics, computed per clip and averaged over clips (docs/esc.md §14).

All are torchmetrics ``Metric`` subclasses whose states are plain sums, so they reduce correctly
under DDP (each rank adds its clips; ``compute`` divides the global sum by the global count).
``update(preds, target)`` takes ``(B, L)`` waveforms; a ``(L,)`` waveform counts as one clip.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from pesq import PesqError, pesq
from pystoi import stoi as pystoi_score
from scipy.signal import resample_poly
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import rank_zero_warn

from escx.mel import ESC_MEL_BANDS, ESC_MEL_WINDOWS, MultiScaleMel

PESQ_SAMPLE_RATE = 16000  # wide-band PESQ (P.862.2) is defined at 16 kHz only


class ClipAverageMetric(Metric):
    """Base class: mean over clips of a per-clip score; NaN scores mark clips that are dropped.

    Subclasses implement :meth:`clip_scores`. ``compute`` returns NaN when no clip was valid;
    the number of dropped clips is kept in the ``dropped`` state (for logging or warnings).
    A subclass that scores several things per clip (DNSMOS: SIG, BAK, OVRL) names them in
    ``score_names``; its ``clip_scores`` returns ``(B, K)`` and ``compute`` a dict by name.
    """

    full_state_update = False
    is_differentiable = False
    score_names: tuple[str, ...] = ()

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # float32 rather than float64 so the metric also moves to devices without float64 (MPS);
        # relative rounding of a sum of 1e4 scores is ~1e-7.
        shape = (len(self.score_names),) if self.score_names else ()
        self.add_state("score_sum", torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state("clips", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("dropped", torch.tensor(0), dist_reduce_fx="sum")

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        """Score each clip.

        Args:
            preds: degraded / reconstructed audio ``(B, L)``.
            target: reference audio ``(B, L)``.

        Returns:
            ``(B,)`` scores (``(B, K)`` with ``K`` score names); NaN for a clip that cannot be
            scored.
        """
        raise NotImplementedError

    def score(self, preds: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Score a batch without adding it: per-clip scores and which clips had finite audio.

        Args:
            preds: ``(B, L)`` (or ``(L,)``) degraded / reconstructed audio.
            target: reference audio of the same shape.

        Returns:
            ``scores`` ``(B, K)`` float32 on the CPU (``K`` = number of score names, at least 1),
            NaN where a clip cannot be scored or its audio is not finite, and ``finite`` ``(B,)``
            bool: False for a clip with NaN or Inf samples (no clip score is computed for it).
        """
        if preds.dim() == 1 and target.dim() == 1:
            preds, target = preds[None], target[None]
        if preds.shape != target.shape or preds.dim() != 2:
            raise ValueError(
                f"{type(self).__name__}.update expects preds and target of the same shape (B, L), "
                f"got {tuple(preds.shape)} and {tuple(target.shape)}"
            )
        preds, target = preds.detach(), target.detach()
        finite = (torch.isfinite(preds).all(-1) & torch.isfinite(target).all(-1)).cpu()
        scores = torch.full((preds.shape[0], max(1, len(self.score_names))), math.nan)
        if finite.any():
            index = finite.to(preds.device)
            found = self.clip_scores(preds[index], target[index]).float().cpu()
            scores[finite] = found.view(int(finite.sum()), -1)
        return scores, finite

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of clips: ``preds`` and ``target`` of shape ``(B, L)`` (or ``(L,)``).

        A clip with NaN or Inf samples is not dropped: it makes the result NaN, so a diverged
        model shows up in the logs instead of being averaged away.
        """
        scores, finite = self.score(preds, target)
        dropped = torch.isnan(scores).any(-1) & finite
        kept = scores[~dropped].sum(0)
        self.score_sum += (kept if self.score_names else kept[0]).to(self.score_sum.device)
        self.clips += int((~dropped).sum())
        self.dropped += int(dropped.sum())

    def compute(self) -> Tensor | dict[str, Tensor]:
        """Mean score over valid clips (NaN if there were none); a dict with ``score_names``."""
        if self.dropped > 0:
            rank_zero_warn(
                f"{type(self).__name__} dropped {int(self.dropped)} of "
                f"{int(self.dropped + self.clips)} clips it cannot score (e.g. silent or too short)"
            )
        if self.clips == 0:
            mean = torch.full_like(self.score_sum, math.nan)
        else:
            mean = self.score_sum / self.clips
        if self.score_names:
            return dict(zip(self.score_names, mean.unbind(), strict=True))
        return mean


def resample_clips(audio: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample ``(..., L)`` float audio from ``rate`` to ``target_rate`` (polyphase), float32."""
    if rate == target_rate:
        return audio.astype(np.float32, copy=False)
    gcd = math.gcd(rate, target_rate)
    return resample_poly(audio, target_rate // gcd, rate // gcd, axis=-1).astype(np.float32)


def _to_numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


# Why not torchmetrics' PerceptualEvaluationSpeechQuality / ShortTimeObjectiveIntelligibility:
# both call the same `pesq` / `pystoi` functions, but they raise on a clip the library cannot
# score (silent or too-short audio) and average every clip they get, while escx drops such clips
# and counts them (`dropped`), and treats pystoi's "not enough frames" fallback (1e-5) as no
# score. Their wrappers would need all of this around them, per clip, so these classes call the
# libraries directly.
class PESQWideband(ClipAverageMetric):
    """Wide-band PESQ (P.862.2, ``pesq`` package), the main ESC metric; higher is better.

    The PESQ library fails ("no utterances detected", or a division by zero) on a silent or
    too-short reference and on a silent prediction. Such clips are dropped and counted in
    ``dropped`` instead of aborting a run. A silent prediction gets no invented score: any
    constant would either sit above what the library gives the worst real outputs (about 1.02;
    the lowest raw score -0.5 maps to 1.043) or be an arbitrary floor, and averaged with real
    scores it would bias the mean either way. Reports carry the dropped count beside the mean.

    Args:
        sample_rate: sampling rate of the inputs; other rates than 16 kHz are resampled to it.
    """

    higher_is_better = True

    def __init__(self, sample_rate: int = PESQ_SAMPLE_RATE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sample_rate = sample_rate

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        ref = resample_clips(_to_numpy(target), self.sample_rate, PESQ_SAMPLE_RATE)
        deg = resample_clips(_to_numpy(preds), self.sample_rate, PESQ_SAMPLE_RATE)
        return torch.tensor([_pesq_score(r, d) for r, d in zip(ref, deg, strict=True)])


def _pesq_score(ref: np.ndarray, deg: np.ndarray) -> float:
    """Wide-band PESQ of one clip, NaN where it cannot be scored."""
    if not (np.any(ref) and np.any(deg)):
        return math.nan  # silence on either side: the library fails on it
    with np.errstate(divide="ignore", invalid="ignore"):
        score = pesq(PESQ_SAMPLE_RATE, ref, deg, "wb", on_error=PesqError.RETURN_VALUES)
    # With RETURN_VALUES, failures come back as negative error codes (or NaN).
    return float(score) if score >= 0 else math.nan


class STOI(ClipAverageMetric):
    """Short-time objective intelligibility (``pystoi``); higher is better.

    Classic STOI lies in [0, 1] for real speech, extended STOI (ESTOI) in about [-0.1, 1]. A
    silent reference is dropped (pystoi returns 0 for it, which would read as unintelligible),
    and so is a clip whose reference leaves too few speech frames after pystoi's silence removal.
    A silent prediction keeps pystoi's score (0 for STOI).

    Args:
        sample_rate: sampling rate of the inputs (pystoi resamples to 10 kHz internally).
        extended: extended STOI (Jensen & Taal 2016) instead of the classic measure.
    """

    higher_is_better = True

    def __init__(self, sample_rate: int = 16000, extended: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sample_rate = sample_rate
        self.extended = extended

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        scores = []
        for r, d in zip(_to_numpy(target), _to_numpy(preds), strict=True):
            if not np.any(r):
                scores.append(math.nan)
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    score = pystoi_score(r, d, self.sample_rate, extended=self.extended)
                except (ValueError, IndexError):  # shorter than one frame (pystoi 0.4.1)
                    scores.append(math.nan)
                    continue
            # pystoi warns and returns 1e-5 when too few speech frames are left after its
            # silence removal: that is "no score", not "unintelligible".
            too_short = any("Not enough STFT frames" in str(w.message) for w in caught)
            scores.append(math.nan if too_short else float(score))
        return torch.tensor(scores, dtype=torch.float32)


def si_sdr(preds: Tensor, target: Tensor, zero_mean: bool = True) -> Tensor:
    """Scale-invariant SDR in dB of each ``(B, L)`` clip pair, in float64 with no epsilon.

    ``10 log10(|a s|^2 / |a s - p|^2)`` with ``a = <p, s> / |s|^2``: the prediction ``p`` is
    split into its projection on the target ``s`` and the rest. No epsilon is added to the
    energies, so the value is the same at any gain of ``p`` (a near-silent output scores what
    its waveform deserves) and is not capped for near-identical signals; float64 keeps the
    projection exact enough for SI-SDRs beyond 100 dB.

    Returns:
        ``(B,)`` float64 on the CPU: NaN where the score is undefined (a silent target, or a
        silent prediction: both make ``0 / 0``), +inf for a prediction that is an exact
        multiple of the target, -inf for one exactly orthogonal to it.
    """
    p = preds.detach().to("cpu", torch.float64)
    s = target.detach().to("cpu", torch.float64)
    if zero_mean:
        p = p - p.mean(-1, keepdim=True)
        s = s - s.mean(-1, keepdim=True)
    s_energy = (s * s).sum(-1)
    p_energy = (p * p).sum(-1)
    undefined = (s_energy == 0) | (p_energy == 0)
    scale = (p * s).sum(-1) / torch.where(undefined, 1.0, s_energy)
    projection = scale[:, None] * s
    signal = (projection * projection).sum(-1)
    noise = ((p - projection) ** 2).sum(-1)
    ratio = 10 * torch.log10(signal) - 10 * torch.log10(noise)
    ratio = torch.where((signal == 0) & (noise > 0), -math.inf, ratio)
    ratio = torch.where((noise == 0) & (signal > 0), math.inf, ratio)
    return torch.where(undefined, math.nan, ratio)


class SISDR(ClipAverageMetric):
    """Scale-invariant signal-to-distortion ratio in dB (:func:`si_sdr`); higher is better.

    Computed in float64 without an epsilon, so it is truly scale-invariant. A clip whose target
    or prediction is silent (zero after removing the mean) has no SI-SDR and is dropped and
    counted in ``dropped``.

    Args:
        zero_mean: remove each clip's mean before scoring (the usual definition).
    """

    higher_is_better = True

    def __init__(self, zero_mean: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.zero_mean = zero_mean

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        return si_sdr(preds, target, self.zero_mean)


class MelDistance(ClipAverageMetric):
    """ESC's mel distance: sum over scales of the mean L1 between log mel spectra; lower is better.

    A clip of at most half the largest window (1024 samples with ESC's windows) is dropped.
    Per clip and scale: ``mean |log10(clamp(mel(pred), eps) ** 2) - log10(clamp(mel(target),
    eps) ** 2)|`` over bands and frames, summed over the 7 scales (docs/esc.md §14; the log term of
    the mel loss only).

    Args:
        sample_rate: sampling rate in Hz.
        windows: STFT window sizes, one per scale.
        n_mels: mel bands, one per scale.
        clamp_eps: floor on mel magnitudes before the log.
    """

    higher_is_better = False

    def __init__(
        self,
        sample_rate: int = 16000,
        windows: Sequence[int] = ESC_MEL_WINDOWS,
        n_mels: Sequence[int] = ESC_MEL_BANDS,
        clamp_eps: float = 1e-5,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.mel = MultiScaleMel(sample_rate, windows, n_mels)
        self.clamp_eps = clamp_eps

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        if preds.shape[-1] <= max(self.mel.windows) // 2:
            # Too short for the largest window's reflect padding: no score (dropped), rather
            # than an error that would end a whole evaluation over one tiny file.
            return torch.full((preds.shape[0],), math.nan)
        preds, target = preds.to(self.score_sum.device), target.to(self.score_sum.device)
        mels = self.mel(torch.cat([preds.float(), target.float()]))
        dist = torch.zeros(preds.shape[0], device=preds.device)
        for mel in mels:
            log_mel = mel.clamp(min=self.clamp_eps).pow(2).log10()
            log_pred, log_target = log_mel.chunk(2)
            dist = dist + (log_pred - log_target).abs().mean(dim=(1, 2))
        return dist


def speech_clip_metrics(sample_rate: int = 16000, with_stoi: bool = True) -> dict[str, Metric]:
    """The ESC evaluation set by key: ``pesq``, ``mel_distance``, ``sisdr``, and unless disabled
    ``stoi`` and ``estoi`` (the slowest two)."""
    metrics: dict[str, Metric] = {
        "pesq": PESQWideband(sample_rate),
        "mel_distance": MelDistance(sample_rate),
        "sisdr": SISDR(),
    }
    if with_stoi:
        metrics["stoi"] = STOI(sample_rate)
        metrics["estoi"] = STOI(sample_rate, extended=True)
    return metrics
