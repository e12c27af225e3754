"""Speaker similarity (``resemblyzer``): cosine of the speaker embeddings of output and input.

Resemblyzer's encoder (the GE2E d-vector model of Wan et al., ICASSP 2018; its weights ship in
the wheel) maps an utterance to a unit-norm 256-dim embedding; a codec that keeps the voice keeps
the embedding. Part of the ``eval`` extra (its ``webrtcvad`` dependency needs setuptools'
``pkg_resources``).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import Tensor

from escx.metrics.audio import ClipAverageMetric

SPEAKER_SAMPLE_RATE = 16000  # resemblyzer's rate; it resamples other rates itself


@functools.cache
def _resemblyzer():  # -> the resemblyzer module
    # webrtcvad's `import pkg_resources` warns that the API is deprecated: nothing a user can act
    # on (the extra pins setuptools < 81 so that it still exists).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import resemblyzer
    return resemblyzer


@functools.cache
def voice_encoder():  # -> resemblyzer.VoiceEncoder
    """One CPU voice encoder per process (loading it reads the bundled weights)."""
    return _resemblyzer().VoiceEncoder("cpu", verbose=False)


def speaker_embedding(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Unit-norm ``(256,)`` embedding of one clip ``(L,)``, after resemblyzer's own
    preprocessing (resampling, loudness normalisation, removal of long silences)."""
    wav = _resemblyzer().preprocess_wav(audio.astype(np.float32), source_sr=sample_rate)
    return voice_encoder().embed_utterance(wav)


class SpeakerSimilarity(ClipAverageMetric):
    """Cosine similarity of the speaker embeddings of ``preds`` and ``target`` (higher is better).

    1 means the same voice as far as the encoder can tell. A silent clip on either side is
    dropped (resemblyzer's preprocessing leaves nothing to embed).

    Args:
        sample_rate: sampling rate of the inputs.
    """

    higher_is_better = True

    def __init__(self, sample_rate: int = SPEAKER_SAMPLE_RATE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sample_rate = sample_rate

    def clip_scores(self, preds: Tensor, target: Tensor) -> Tensor:
        """``(B,)`` cosine similarities of ``(B, L)`` clip pairs."""
        scores = []
        for p, t in zip(preds.float().cpu().numpy(), target.float().cpu().numpy(), strict=True):
            if not (np.any(p) and np.any(t)):
                scores.append(float("nan"))
                continue
            a, b = speaker_embedding(p, self.sample_rate), speaker_embedding(t, self.sample_rate)
            # Embeddings are unit-norm already; dividing keeps the value a cosine regardless.
            scores.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        return torch.tensor(scores, dtype=torch.float32)
