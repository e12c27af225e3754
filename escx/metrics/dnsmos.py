"""DNSMOS P.835 (``speechmos``): non-intrusive MOS of the reconstruction alone.

DNSMOS (Reddy et al., ICASSP 2022) predicts the three ITU-T P.835 ratings of a clip, speech signal
quality (SIG), background noise (BAK) and overall quality (OVRL), from the audio alone. The ONNX
models ship inside the ``speechmos`` wheel, so scoring needs no network. Part of the ``eval``
extra.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from escx.metrics.audio import ClipAverageMetric, resample_clips

DNSMOS_SAMPLE_RATE = 16000  # the models are trained on 16 kHz audio


def dnsmos_scores(audio: np.ndarray) -> tuple[float, float, float]:
    """SIG, BAK and OVRL of one 16 kHz clip ``(L,)`` from speechmos' own ``run``.

    speechmos refuses samples outside [-1, 1], which a decoder may produce; they are clipped
    here, as writing the clip to a 16-bit file would. Clips under 9.01 s are tiled to that length
    by speechmos, longer ones are scored in 9 s windows with a 1 s hop and averaged.
    """
    from speechmos import dnsmos

    result = dnsmos.run(np.clip(audio, -1.0, 1.0).astype(np.float32), DNSMOS_SAMPLE_RATE)
    return float(result["sig_mos"]), float(result["bak_mos"]), float(result["ovrl_mos"])


class DNSMOS(ClipAverageMetric):
    """DNSMOS P.835 SIG, BAK and OVRL of ``preds`` (1-5, higher is better); ``target`` unused.

    ``compute`` returns ``{"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"}``, each a mean over clips.
    A silent clip is dropped (the model has nothing to rate; its scores would be arbitrary).

    Args:
        sample_rate: sampling rate of the inputs; other rates are resampled to 16 kHz.
    """

    higher_is_better = True
    score_names = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl")

    def __init__(self, sample_rate: int = DNSMOS_SAMPLE_RATE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sample_rate = sample_rate

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        """``(B, 3)`` SIG, BAK, OVRL of each ``(B, L)`` prediction (NaN rows for silence)."""
        audio = resample_clips(
            preds.detach().float().cpu().numpy(), self.sample_rate, DNSMOS_SAMPLE_RATE
        )
        scores = torch.full((audio.shape[0], 3), float("nan"))
        for i, clip in enumerate(audio):
            if np.any(clip):
                scores[i] = torch.tensor(dnsmos_scores(clip))
        return scores
