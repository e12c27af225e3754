"""ViSQOL v3 in speech mode (``visqol-python``): intrusive MOS-LQO, reconstruction vs original.

ViSQOL (Chinen et al., QoMEX 2020) compares gammatone spectrogram patches of the degraded and
reference signals (NSIM similarity) and maps them to a MOS-LQO in 1-5. Speech mode works at
16 kHz. Part of the ``eval`` extra.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch
from torch import Tensor

from escx.metrics.audio import ClipAverageMetric, resample_clips

VISQOL_SAMPLE_RATE = 16000  # speech mode's rate

logger = logging.getLogger(__name__)


@functools.cache
def visqol_api():  # -> visqol.VisqolApi
    """One speech-mode ViSQOL instance per process (its set-up parses model files).

    ``use_lattice_model=False``: the deep-lattice mapping that the C++ release uses by default
    needs the ``ai-edge-litert`` TFLite runtime (not in the ``eval`` extra); the polynomial
    similarity-to-MOS mapping, scaled to 5, needs nothing more and is deterministic. Scores are
    therefore comparable between escx runs, not to numbers from the lattice mapping.
    """
    from visqol import VisqolApi

    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=False)
    return api


def visqol_score(reference: np.ndarray, degraded: np.ndarray) -> float:
    """ViSQOL speech-mode MOS-LQO of one 16 kHz clip pair ``(L,)``."""
    result = visqol_api().measure_from_arrays(
        reference.astype(np.float64), degraded.astype(np.float64), VISQOL_SAMPLE_RATE
    )
    return float(result.moslqo)


class ViSQOL(ClipAverageMetric):
    """ViSQOL speech-mode MOS-LQO of ``preds`` against ``target`` (1-5, higher is better).

    A silent reference is dropped (nothing to compare with); a clip ViSQOL rejects (too short
    for one analysis patch) is dropped too and counted in ``dropped``.

    Args:
        sample_rate: sampling rate of the inputs; other rates are resampled to 16 kHz.
    """

    higher_is_better = True

    def __init__(self, sample_rate: int = VISQOL_SAMPLE_RATE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sample_rate = sample_rate

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        """``(B,)`` MOS-LQO of ``(B, L)`` predictions against ``(B, L)`` references."""
        ref = resample_clips(target.float().cpu().numpy(), self.sample_rate, VISQOL_SAMPLE_RATE)
        deg = resample_clips(preds.float().cpu().numpy(), self.sample_rate, VISQOL_SAMPLE_RATE)
        scores = []
        for r, d in zip(ref, deg, strict=True):
            if not np.any(r):
                scores.append(float("nan"))
                continue
            try:
                scores.append(visqol_score(r, d))
            # A clip too short for one analysis patch raises ValueError, or IndexError when
            # the reference has no patch at all (visqol-python 3.8.0, about 0.5 s of speech).
            except (ValueError, IndexError) as error:
                logger.debug("ViSQOL cannot score a clip: %s", error)
                scores.append(float("nan"))
        return torch.tensor(scores, dtype=torch.float32)
