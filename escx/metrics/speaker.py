"""Speaker similarity (``resemblyzer``): cosine of the speaker embeddings of output and input.

Resemblyzer's encoder (the GE2E d-vector model of Wan et al., ICASSP 2018; its weights ship in
the wheel) maps an utterance to a unit-norm 256-dim embedding; a codec that keeps the voice keeps
the embedding. Part of the ``eval`` extra (its ``webrtcvad`` dependency needs setuptools'
``pkg_resources``).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from collections import OrderedDict

import numpy as np
import torch
from torch import Tensor

from escx.metrics.audio import ClipAverageMetric

SPEAKER_SAMPLE_RATE = 16000  # resemblyzer's rate; it resamples other rates itself
MIN_SAMPLES = 1600  # 0.1 s at 16 kHz: less than this after silence removal is no voice


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


def speaker_embedding(audio: np.ndarray, sample_rate: int, keep_unvoiced: bool = False):
    """Unit-norm ``(256,)`` embedding of one clip ``(L,)`` after resemblyzer's own preprocessing
    (resampling, loudness normalisation, removal of long silences by its voice detector).

    Returns None when the voice detector leaves no audio, unless ``keep_unvoiced``: then the clip
    is embedded without silence removal. A reconstruction that no longer sounds like speech must
    still be scored (low), not embedded as an empty signal, whose embedding is the same for every
    input and would give every such output the same similarity.
    """
    module = _resemblyzer()
    wav = module.preprocess_wav(audio.astype(np.float32), source_sr=sample_rate)
    if wav.size < MIN_SAMPLES:
        if not keep_unvoiced:
            return None
        from librosa import resample

        params = module.hparams
        wav = resample(
            audio.astype(np.float32), orig_sr=sample_rate, target_sr=params.sampling_rate
        )
        wav = module.audio.normalize_volume(wav, params.audio_norm_target_dBFS, increase_only=True)
    return voice_encoder().embed_utterance(wav)


_REFERENCES: OrderedDict[bytes, np.ndarray | None] = OrderedDict()
REFERENCE_CACHE = 64  # clips


def _reference_embedding(audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """:func:`speaker_embedding` of a reference clip, remembered for the last few clips.

    An evaluation scores the same original against its decoding at every bitrate; embedding it
    once instead of once per bitrate halves the metric's cost from the second bitrate on.
    """
    key = hashlib.sha1(audio.tobytes() + str(sample_rate).encode()).digest()
    if key not in _REFERENCES:
        _REFERENCES[key] = speaker_embedding(audio, sample_rate)
        if len(_REFERENCES) > REFERENCE_CACHE:
            _REFERENCES.popitem(last=False)
    _REFERENCES.move_to_end(key)
    return _REFERENCES[key]


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
            b = _reference_embedding(t, self.sample_rate)
            if b is None:  # no voice in the reference: nothing to compare with
                scores.append(float("nan"))
                continue
            a = speaker_embedding(p, self.sample_rate, keep_unvoiced=True)
            # Embeddings are unit-norm already; dividing keeps the value a cosine regardless.
            scores.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
        return torch.tensor(scores, dtype=torch.float32)
