"""Model-based quality metrics (the ``eval`` extra): DNSMOS, ViSQOL, speaker similarity.

On a real speech clip each metric must rank the clean clip above the same clip with noise added,
and give what the package's own functions give; merged states (what DDP does across ranks) must
equal one metric that saw every clip.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from tools_fixtures import SPEECH

from escx.metrics import DNSMOS, SpeakerSimilarity, ViSQOL, model_quality_metrics
from escx.metrics import models as model_metrics

pytestmark = pytest.mark.skipif(
    model_metrics.missing_model_columns() != [], reason="the eval extra is not installed"
)


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    """A real 16 kHz clip and the same clip with white noise at 5 dB SNR, both (L,)."""
    files = sorted((SPEECH / "val").glob("*.flac"))
    if not files:
        pytest.skip(f"no real speech at {SPEECH / 'val'} (a checkout without ../shared/speech)")
    audio, rate = sf.read(files[0], dtype="float32")
    assert rate == 16000
    clean = torch.from_numpy(audio)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noise *= clean.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() / math.sqrt(10 ** (5 / 10))
    return clean, (clean + noise).clamp(-1, 1)


def _score(metric_cls, preds: torch.Tensor, target: torch.Tensor):
    metric = metric_cls(16000)
    metric.update(preds[None], target[None])
    return metric, metric.compute()


def test_dnsmos_prefers_clean_speech_and_matches_speechmos(clips):
    from speechmos import dnsmos

    clean, noisy = clips
    _, good = _score(DNSMOS, clean, clean)
    _, bad = _score(DNSMOS, noisy, clean)
    for key in ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"):
        assert 1.0 <= bad[key] < good[key] <= 5.0, key
    assert good["dnsmos_ovrl"] > bad["dnsmos_ovrl"] + 1.0  # 5 dB white noise is plainly audible
    own = dnsmos.run(clean.numpy(), 16000)
    assert good["dnsmos_sig"].item() == pytest.approx(own["sig_mos"], abs=1e-5)
    assert good["dnsmos_bak"].item() == pytest.approx(own["bak_mos"], abs=1e-5)
    assert good["dnsmos_ovrl"].item() == pytest.approx(own["ovrl_mos"], abs=1e-5)


def test_visqol_prefers_clean_speech_and_matches_visqol(clips):
    from visqol import VisqolApi

    clean, noisy = clips
    _, good = _score(ViSQOL, clean, clean)
    _, bad = _score(ViSQOL, noisy, clean)
    assert 1.0 <= bad < good <= 5.0
    api = VisqolApi()
    api.create(mode="speech", use_lattice_model=False)
    own = api.measure_from_arrays(clean.double().numpy(), noisy.double().numpy(), 16000)
    assert bad.item() == pytest.approx(own.moslqo, abs=1e-5)


def test_speaker_similarity_prefers_clean_speech_and_matches_resemblyzer(clips):
    from resemblyzer import VoiceEncoder, preprocess_wav

    clean, noisy = clips
    _, same = _score(SpeakerSimilarity, clean, clean)
    _, bad = _score(SpeakerSimilarity, noisy, clean)
    assert same.item() == pytest.approx(1.0, abs=1e-5) and bad < same - 0.05
    encoder = VoiceEncoder("cpu", verbose=False)
    a, b = (encoder.embed_utterance(preprocess_wav(x.numpy(), source_sr=16000)) for x in clips)
    assert bad.item() == pytest.approx(float(np.dot(a, b)), abs=1e-5)


@pytest.mark.parametrize("metric_cls", [DNSMOS, ViSQOL, SpeakerSimilarity])
def test_merged_states_equal_one_metric_over_all_clips(clips, metric_cls):
    # DDP reduces each state across ranks with its dist_reduce_fx; merge_state applies the same
    # reductions, so two "ranks" with one clip each must give the mean over both clips.
    clean, noisy = clips
    half = clean.shape[-1] // 2
    first, second = metric_cls(16000), metric_cls(16000)
    first.update(noisy[None], clean[None])
    second.update(noisy[None, :half], clean[None, :half])
    both = metric_cls(16000)
    both.update(noisy[None], clean[None])
    both.update(noisy[None, :half], clean[None, :half])
    first.merge_state(second)
    merged, expected = first.compute(), both.compute()
    if isinstance(expected, dict):
        merged, expected = torch.stack(list(merged.values())), torch.stack(list(expected.values()))
    assert int(first.clips) == 2
    torch.testing.assert_close(merged, expected, rtol=1e-6, atol=1e-6)


def test_silent_clips_are_dropped_not_scored():
    silent = torch.zeros(1, 16000)
    for metric in (DNSMOS(), ViSQOL(), SpeakerSimilarity()):
        metric.update(silent, silent)
        assert int(metric.dropped) == 1 and int(metric.clips) == 0


def test_without_the_extra_one_line_names_the_missing_columns(monkeypatch, caplog):
    real = model_metrics.importlib.util.find_spec
    monkeypatch.setattr(
        model_metrics.importlib.util,
        "find_spec",
        lambda name, *a: None if name in ("visqol", "resemblyzer") else real(name, *a),
    )
    monkeypatch.setattr(model_metrics, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="escx.metrics.models"):
        first = model_quality_metrics(16000)
        model_quality_metrics(16000)
    assert set(first.keys()) == {"dnsmos"}
    (record,) = caplog.records  # once per process, not per bitrate
    assert "visqol, speaker_sim" in record.getMessage()
    assert '".[eval]"' in record.getMessage()


def test_speaker_similarity_scores_outputs_without_voice(clips):
    # Resemblyzer's voice detector removes all of a noise-like output; embedding that empty signal
    # would give every such output the same score. They are embedded whole instead.
    clean, noisy = clips
    generator = torch.Generator().manual_seed(1)
    hum = 0.1 * torch.sin(torch.arange(clean.numel()) * 2 * math.pi * 100 / 16000)
    scores = []
    for preds in (0.1 * torch.randn(clean.shape, generator=generator), hum):
        _, score = _score(SpeakerSimilarity, preds, clean)
        scores.append(score.item())
    _, speech = _score(SpeakerSimilarity, noisy, clean)
    assert max(scores) < speech.item() and abs(scores[0] - scores[1]) > 1e-3
