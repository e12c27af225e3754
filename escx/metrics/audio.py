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
from torchmetrics import Metric, MetricCollection
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio
from torchmetrics.utilities import rank_zero_warn

from escx.mel import ESC_MEL_BANDS, ESC_MEL_WINDOWS, MultiScaleMel

PESQ_SAMPLE_RATE = 16000  # wide-band PESQ (P.862.2) is defined at 16 kHz only
# Lowest wide-band MOS-LQO: P.862.2's mapping 0.999 + 4 / (1 + exp(-1.3669 x + 3.8224)) at the
# lowest raw PESQ score x = -0.5.
PESQ_WB_MIN = 0.999 + 4.0 / (1.0 + math.exp(1.3669 * 0.5 + 3.8224))


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

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add a batch of clips: ``preds`` and ``target`` of shape ``(B, L)`` (or ``(L,)``).

        A clip with NaN or Inf samples is not dropped: it makes the result NaN, so a diverged
        model shows up in the logs instead of being averaged away.
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
        scores = torch.full((preds.shape[0], *self.score_sum.shape), math.nan)
        if finite.any():
            index = finite.to(preds.device)
            scores[finite] = self.clip_scores(preds[index], target[index]).float().cpu()
        per_clip = scores.view(scores.shape[0], -1)
        dropped = torch.isnan(per_clip).any(-1) & finite
        self.score_sum += scores[~dropped].sum(0).to(self.score_sum.device)
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
# score (silent or too-short reference) and average every clip they get, while escx drops such
# clips and counts them (`dropped`), scores a silent output as the worst PESQ rather than failing,
# and treats pystoi's "not enough frames" fallback (1e-5) as no score. Their wrappers would need
# all of this around them, per clip, so these classes call the libraries directly.
class PESQWideband(ClipAverageMetric):
    """Wide-band PESQ (P.862.2, ``pesq`` package), the main ESC metric; higher is better.

    A silent or too-short *reference* makes the PESQ library fail ("no utterances detected");
    such clips are dropped (counted in ``dropped``) instead of aborting an evaluation run. A
    silent *prediction* of a scorable reference gets the lowest wide-band score (about 1.04), so
    a codec that outputs silence is penalised rather than excluded.

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


def _pesq_once(ref: np.ndarray, deg: np.ndarray) -> float:
    """Wide-band PESQ of one clip, NaN where the library reports an error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score = pesq(PESQ_SAMPLE_RATE, ref, deg, "wb", on_error=PesqError.RETURN_VALUES)
    # With RETURN_VALUES, failures come back as negative error codes (or NaN).
    return float(score) if score >= 0 else math.nan


def _pesq_score(ref: np.ndarray, deg: np.ndarray) -> float:
    if not np.any(ref):
        return math.nan  # nothing to compare against: the library fails on it
    if not np.any(deg):
        # A silent output for a scorable reference is the worst quality, not a missing value
        # (the library itself fails on it, dividing by zero).
        return PESQ_WB_MIN if not math.isnan(_pesq_once(ref, ref)) else math.nan
    return _pesq_once(ref, deg)


class STOI(ClipAverageMetric):
    """Short-time objective intelligibility (``pystoi``), in [0, 1]; higher is better.

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
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                score = pystoi_score(r, d, self.sample_rate, extended=self.extended)
            # pystoi warns and returns 1e-5 when too few speech frames are left after its
            # silence removal: that is "no score", not "unintelligible".
            too_short = any("Not enough STFT frames" in str(w.message) for w in caught)
            scores.append(math.nan if too_short else float(score))
        return torch.tensor(scores, dtype=torch.float32)


class SISDR(ClipAverageMetric):
    """Scale-invariant signal-to-distortion ratio in dB, zero-mean by default; higher is better."""

    higher_is_better = True

    def __init__(self, zero_mean: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.zero_mean = zero_mean

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        with torch.autocast(device_type=preds.device.type, enabled=False):
            return scale_invariant_signal_distortion_ratio(
                preds.float(), target.float(), zero_mean=self.zero_mean
            )


class MelDistance(ClipAverageMetric):
    """ESC's mel distance: sum over scales of the mean L1 between log mel spectra; lower is better.

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
        preds, target = preds.to(self.score_sum.device), target.to(self.score_sum.device)
        mels = self.mel(torch.cat([preds.float(), target.float()]))
        dist = torch.zeros(preds.shape[0], device=preds.device)
        for mel in mels:
            log_mel = mel.clamp(min=self.clamp_eps).pow(2).log10()
            log_pred, log_target = log_mel.chunk(2)
            dist = dist + (log_pred - log_target).abs().mean(dim=(1, 2))
        return dist


def speech_quality_metrics(sample_rate: int = 16000, with_stoi: bool = True) -> MetricCollection:
    """The ESC evaluation set: PESQ, mel distance and SI-SDR, plus STOI unless disabled.

    Keys are ``pesq``, ``mel_distance``, ``sisdr`` and ``stoi``; use ``prefix``/``postfix`` via
    ``MetricCollection.clone`` for names such as ``val/pesq@9kbps``.
    """
    metrics: dict[str, Metric] = {
        "pesq": PESQWideband(sample_rate),
        "mel_distance": MelDistance(sample_rate),
        "sisdr": SISDR(),
    }
    if with_stoi:
        metrics["stoi"] = STOI(sample_rate)
    # compute_groups=False: these metrics share state names, and torchmetrics would merge two
    # of them whose states happen to be equal after the first update.
    return MetricCollection(metrics, compute_groups=False)
