"""Tests for escx.metrics: speech-quality metrics and codebook usage, including DDP reduction."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pystoi import stoi as pystoi_score

from escx.metrics import (
    SISDR,
    STOI,
    CodebookUsage,
    MelDistance,
    PESQWideband,
    SameClipMetrics,
    si_sdr,
    speech_quality_metrics,
)

SR = 16000
SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"


def _noise(batch: int = 2, length: int = 8000, seed: int = 0, scale: float = 0.1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, length, generator=gen)


def _speech(seconds: float = 4.0) -> torch.Tensor:
    files = sorted((SPEECH / "val").glob("*.flac"))
    if not files:
        pytest.skip(f"real speech not found under {SPEECH / 'val'} (only in the dev checkout)")
    for path in files:
        audio, sr = sf.read(path, dtype="float32")
        if sr == SR and audio.ndim == 1 and len(audio) >= seconds * SR:
            return torch.from_numpy(audio[: int(seconds * SR)])
    pytest.skip(f"no mono 16 kHz clip of {seconds} s under {SPEECH / 'val'}")


def _add_noise(clean: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed))
    gain = clean.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() / 10 ** (snr_db / 20)
    return clean + gain * noise


# ---------------------------------------------------------------- clip-averaged audio metrics


def test_pesq_of_speech_against_itself_and_noisy_versions() -> None:
    clean = _speech()
    metric = PESQWideband()
    metric.update(clean[None], clean[None])
    assert metric.compute().item() == pytest.approx(4.64, abs=0.01)  # the P.862.2 ceiling
    scores = []
    for snr in (20.0, 5.0):
        metric = PESQWideband()
        metric.update(_add_noise(clean, snr)[None], clean[None])
        scores.append(metric.compute().item())
    assert 4.64 > scores[0] > scores[1] > 1.0


def test_pesq_drops_silent_and_too_short_clips() -> None:
    metric = PESQWideband()
    metric.update(torch.zeros(2, SR), torch.zeros(2, SR))
    metric.update(_noise(1, 400), _noise(1, 400))  # 25 ms: too short for PESQ
    with pytest.warns(UserWarning, match="dropped 3 of 3 clips"):
        assert math.isnan(metric.compute().item())
    assert metric.dropped.item() == 3 and metric.clips.item() == 0


def test_pesq_averages_over_valid_clips_only() -> None:
    clean = _speech()
    noisy = _add_noise(clean, 10.0)
    silent = torch.zeros_like(clean)
    metric = PESQWideband()
    # Clip 3 has a silent reference, clip 4 a silent output: both dropped, neither gets a made-up
    # score (the old 1.043 sat above what the library gives the worst real outputs).
    metric.update(
        torch.stack([clean, noisy, clean, silent]), torch.stack([clean, clean, silent, clean])
    )
    single = PESQWideband()
    single.update(noisy[None], clean[None])
    expected = (4.64 + single.compute().item()) / 2
    assert metric.dropped.item() == 2 and metric.clips.item() == 2
    with pytest.warns(UserWarning, match="dropped 2 of 4 clips"):
        assert metric.compute().item() == pytest.approx(expected, abs=0.01)


def test_non_finite_predictions_make_the_result_nan() -> None:
    target = _noise()
    preds = target.clone()
    preds[1, 10] = math.nan
    for metric in (SISDR(), MelDistance(), PESQWideband()):
        metric.update(preds, target)
        assert math.isnan(metric.compute().item()) and metric.dropped.item() == 0


def test_pesq_resamples_other_rates() -> None:
    clean = _speech(2.0)
    up = torch.from_numpy(np.repeat(clean.numpy(), 3))  # crude 48 kHz version, band-limited later
    metric = PESQWideband(sample_rate=48000)
    metric.update(up[None], up[None])
    assert metric.compute().item() == pytest.approx(4.64, abs=0.01)


def test_stoi_sanity() -> None:
    clean = _noise(1, 2 * SR, scale=0.3)[0] * torch.sin(torch.linspace(0, 20, 2 * SR)).abs()
    metric = STOI()
    metric.update(clean[None], clean[None])
    assert metric.compute().item() == pytest.approx(1.0, abs=1e-4)
    noisy = STOI()
    noisy.update(_add_noise(clean, -5.0)[None], clean[None])
    assert noisy.compute().item() < 0.9


def test_stoi_drops_clips_too_short_to_score() -> None:
    metric = STOI()
    metric.update(_noise(1, 1000), _noise(1, 1000))
    with pytest.warns(UserWarning, match="dropped 1 of 1 clips"):
        assert math.isnan(metric.compute().item())


def test_sisdr_matches_snr_and_is_scale_invariant() -> None:
    t = torch.arange(SR) / SR
    clean = torch.sin(2 * math.pi * 440 * t)[None]
    noisy = _add_noise(clean, 10.0)
    metric = SISDR()
    metric.update(noisy, clean)
    assert metric.compute().item() == pytest.approx(10.0, abs=0.3)
    scaled = SISDR()
    scaled.update(0.5 * noisy, clean)
    assert scaled.compute().item() == pytest.approx(metric.compute().item(), abs=1e-3)


def _orthogonal(clean: torch.Tensor, snr_db: float) -> torch.Tensor:
    """Zero-mean noise orthogonal to zero-mean ``clean`` at exactly ``snr_db`` (float64)."""
    s = clean.double() - clean.double().mean()
    noise = torch.randn(s.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    noise -= noise.mean()
    noise -= (noise @ s) / (s @ s) * s
    return noise * s.norm() / noise.norm() / 10 ** (snr_db / 20)


@pytest.mark.parametrize("snr_db", [20.0, -30.0, -74.2])
def test_sisdr_is_exact_at_any_gain(snr_db: float) -> None:
    """No epsilon on the energies: an output of known SI-SDR scores it at full scale and at
    1e-7 of it (torchmetrics' float32 epsilon moved such near-silent outputs by up to 48 dB)."""
    clean = _speech(2.0).double()
    degraded = (clean - clean.mean()) + _orthogonal(clean, snr_db)
    for gain in (1.0, 1e-7):
        score = si_sdr((gain * degraded)[None], clean[None])
        assert score.item() == pytest.approx(snr_db, abs=1e-6)
    # Identical signals are not capped (torchmetrics stopped at 95.6 dB).
    assert si_sdr(clean[None], clean[None]).item() == math.inf
    assert si_sdr((clean + 1e-9 * _orthogonal(clean, 0.0))[None], clean[None]).item() > 150


def test_sisdr_drops_silent_clips() -> None:
    clean = _noise(1, 4000)
    metric = SISDR()
    # A silent output has no SI-SDR (torchmetrics gave it 0 dB, above real bad outputs); a
    # constant one is silent once the mean is removed; a silent target has none either.
    metric.update(torch.cat([clean, torch.zeros_like(clean), torch.full_like(clean, 0.3)]),
                  torch.cat([clean, clean, clean]))  # fmt: skip
    metric.update(clean, torch.zeros_like(clean))
    assert metric.dropped.item() == 3 and metric.clips.item() == 1
    with pytest.warns(UserWarning, match="dropped 3 of 4 clips"):
        assert metric.compute().item() == math.inf


def test_estoi_equals_pystoi() -> None:
    clean = _speech(3.0)
    noisy = _add_noise(clean, 5.0)
    for extended in (False, True):
        metric = STOI(extended=extended)
        metric.update(noisy[None], clean[None])
        expected = pystoi_score(clean.numpy(), noisy.numpy(), SR, extended=extended)
        assert metric.compute().item() == pytest.approx(expected, abs=1e-6)


def test_same_clip_metrics_average_every_metric_over_the_same_clips() -> None:
    clean = _speech(2.0)
    noisy = _add_noise(clean, 10.0)
    short = clean[SR // 2 : SR // 2 + 6000]  # 0.375 s: PESQ scores it, STOI has too few frames
    metric = speech_quality_metrics()
    metric.update(noisy[None], clean[None])
    metric.update(torch.zeros_like(clean)[None], clean[None])  # silent: PESQ, SI-SDR drop it
    metric.update(_add_noise(short, 10.0)[None], short[None])
    metric.update(short[None, :400], short[None, :400])  # 25 ms: no metric but SI-SDR scores it
    summary = metric.summary()
    assert summary.clips == 1 and summary.total == 4
    assert summary.dropped == {"pesq": 2, "mel_distance": 1, "sisdr": 1, "stoi": 2, "estoi": 2}
    alone = speech_quality_metrics()
    alone.update(noisy[None], clean[None])
    for name, value in alone.compute().items():  # every mean is over the first clip alone
        assert summary.means[name] == pytest.approx(value.item(), rel=1e-6), name
    with pytest.warns(UserWarning, match="use 1 of 4 clips"):
        assert set(metric.compute()) == {"pesq", "mel_distance", "sisdr", "stoi", "estoi"}


def test_a_metric_that_scores_no_clip_does_not_empty_the_others() -> None:
    short = _speech(2.0)[SR // 2 : SR // 2 + 6000]  # too short for STOI's frames, not for PESQ
    metric = speech_quality_metrics()
    metric.update(_add_noise(short, 10.0)[None], short[None])
    summary = metric.summary()
    assert summary.clips == 1 and summary.dropped["stoi"] == 1
    assert math.isnan(summary.means["stoi"]) and math.isnan(summary.means["estoi"])
    assert 1.0 < summary.means["pesq"] < 4.7


def test_same_clip_metrics_poisoned_by_non_finite_audio() -> None:
    target = _noise()
    preds = target.clone()
    preds[1, 3] = math.inf
    metric = SameClipMetrics({"sisdr": SISDR(), "mel_distance": MelDistance()})
    metric.update(preds, target)
    summary = metric.summary()
    assert all(math.isnan(v) for v in summary.means.values())
    assert summary.dropped == {"sisdr": 0, "mel_distance": 0} and summary.clips == 1


def test_mel_distance_zero_for_identical_and_averaged_per_clip() -> None:
    target = _noise(scale=1.0)
    metric = MelDistance()
    metric.update(target, target)
    assert metric.compute().item() == 0.0
    # Doubling the gain moves every log10(mel^2) by 2 log10(2) on each of the 7 scales; a batch
    # of one identical and one doubled clip averages to half that.
    metric = MelDistance()
    metric.update(torch.stack([target[0], 2 * target[1]]), target)
    assert metric.compute().item() == pytest.approx(7 * 2 * math.log10(2) / 2, rel=1e-4)


def test_clip_metrics_reject_mismatched_shapes() -> None:
    for metric in (SISDR(), MelDistance()):
        with pytest.raises(ValueError, match=r"same shape \(B, L\)"):
            metric.update(torch.zeros(2, 8000), torch.zeros(2, 7999))


def test_speech_quality_collection() -> None:
    metrics = speech_quality_metrics()
    target = _noise()
    metrics.update(target + 0.01 * _noise(seed=1), target)
    values = metrics.compute()
    assert set(values) == {"pesq", "mel_distance", "sisdr", "stoi", "estoi"}
    assert values["sisdr"] > 15 and values["mel_distance"] > 0


# ---------------------------------------------------------------- codebook usage


def test_codebook_uniform_codes() -> None:
    k = 16
    metric = CodebookUsage(num_streams=2, num_groups=3, codebook_size=k)
    codes = torch.arange(k).repeat(4, 2, 3, 2)  # every entry used equally often
    metric.update(codes)
    out = metric.compute()
    for key in ("usage", "utilization", "s2g3/usage", "s1g1/utilization", "bitrate_utilization"):
        assert out[key].item() == pytest.approx(1.0)
    assert out["perplexity"].item() == pytest.approx(k)
    assert out["dead"].item() == 0


def test_codebook_single_code() -> None:
    k = 8
    metric = CodebookUsage(num_streams=1, num_groups=2, codebook_size=k)
    metric.update(torch.full((3, 1, 2, 10), 5))
    out = metric.compute()
    assert out["s1g2/usage"].item() == pytest.approx(1 / k)
    assert out["s1g1/utilization"].item() == 0.0
    assert out["perplexity"].item() == pytest.approx(1.0)
    assert out["dead"].item() == k - 1


def test_codebook_partial_streams_and_bitrate_utilization() -> None:
    k = 4
    metric = CodebookUsage(num_streams=3, num_groups=1, codebook_size=k)
    uniform = torch.arange(k).repeat(1, 1, 1, 5)  # (1, 1, 1, 20)
    metric.update(torch.cat([uniform, torch.zeros_like(uniform)], dim=1))  # 2 of 3 streams
    out = metric.compute()
    assert not any(key.startswith("s3") for key in out)  # stream 3 never received codes
    assert out["s1g1/utilization"].item() == pytest.approx(1.0)
    assert out["s2g1/utilization"].item() == 0.0
    assert out["utilization"].item() == pytest.approx(0.5)
    assert out["bitrate_utilization"].item() == pytest.approx(0.5)  # (2 + 0) bits / (2 * 2 bits)
    assert metric.bitrate_utilization(3).item() == pytest.approx(1 / 3)
    hist = metric.histogram()
    assert hist.shape == (3, 1, k) and hist[0, 0].tolist() == [5] * k and hist[2].sum() == 0


def test_codebook_entropy_of_a_skewed_histogram() -> None:
    # p = (1/2, 1/4, 1/4, 0): H = 1.5 bits -> utilisation 0.75, perplexity 2^1.5.
    metric = CodebookUsage(num_streams=1, num_groups=1, codebook_size=4)
    metric.update(torch.tensor([0, 0, 1, 2]).view(1, 1, 1, 4))
    out = metric.compute()
    assert out["utilization"].item() == pytest.approx(0.75)
    assert out["perplexity"].item() == pytest.approx(2**1.5)
    assert out["usage"].item() == pytest.approx(0.75) and out["dead"].item() == 1


def test_codebook_rejects_bad_codes() -> None:
    metric = CodebookUsage(num_streams=2, num_groups=3, codebook_size=8)
    with pytest.raises(ValueError, match=r"\(B, S, G, T\)"):
        metric.update(torch.zeros(2, 3, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        metric.update(torch.zeros(2, 2, 3, 10))
    with pytest.raises(ValueError, match="3 streams x 3 groups"):
        metric.update(torch.zeros(2, 3, 3, 10, dtype=torch.long))
    with pytest.raises(ValueError, match="codebook_size"):
        metric.update(torch.full((2, 2, 3, 10), 8))


# ---------------------------------------------------------------- DDP reduction


def _shard_data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 32, (6, 3, 2, 20), generator=gen) ** 2 % 32  # skewed use
    target = 0.1 * torch.randn(6, 4000, generator=gen)
    preds = target + 0.05 * torch.randn(6, 4000, generator=gen)
    target[4] = 0.0  # SI-SDR drops this clip, mel distance scores it
    return codes, preds, target


def _new_metrics() -> dict:
    return {
        "codebook": CodebookUsage(num_streams=4, num_groups=2, codebook_size=32),
        "sisdr": SISDR(),
        "mel": MelDistance(),
        "same": SameClipMetrics({"sisdr": SISDR(), "mel_distance": MelDistance()}),
    }


def _update(metrics: dict, codes, preds, target) -> None:
    metrics["codebook"].update(codes)
    metrics["sisdr"].update(preds, target)
    metrics["mel"].update(preds, target)
    metrics["same"].update(preds, target)


def _computed(metrics: dict) -> dict[str, torch.Tensor]:
    out = {f"codebook/{k}": v for k, v in metrics["codebook"].compute().items()}
    out["codebook/histogram"] = metrics["codebook"].histogram()
    out["sisdr"] = metrics["sisdr"].compute()
    out["mel"] = metrics["mel"].compute()
    summary = metrics["same"].summary()
    out.update({f"same/{k}": torch.tensor(v) for k, v in summary.means.items()})
    out["same/clips"] = torch.tensor(summary.clips)
    out.update({f"same/dropped/{k}": torch.tensor(v) for k, v in summary.dropped.items()})
    return out


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


@pytest.mark.filterwarnings("ignore:SISDR dropped 1 of")  # the silent target, on purpose
def test_merged_shards_equal_the_whole() -> None:
    codes, preds, target = _shard_data()
    whole = _new_metrics()
    _update(whole, codes, preds, target)
    shards = [_new_metrics(), _new_metrics()]
    _update(shards[0], codes[:2], preds[:2], target[:2])  # unequal shards on purpose
    _update(shards[1], codes[2:], preds[2:], target[2:])
    for name, metric in shards[0].items():
        metric.merge_state(shards[1][name])
    _assert_same(_computed(shards[0]), _computed(whole))


def _ddp_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.set_num_threads(1)
        codes, preds, target = _shard_data()
        metrics = _new_metrics()
        _update(metrics, codes[rank::world_size], preds[rank::world_size], target[rank::world_size])
        computed = _computed(metrics)
        # A rank without clips (its list state is empty) still reduces to the whole set.
        lonely = SameClipMetrics({"sisdr": SISDR(), "mel_distance": MelDistance()})
        if rank == 0:
            lonely.update(preds, target)
        summary = lonely.summary()
        computed.update({f"same/{k}": torch.tensor(v) for k, v in summary.means.items()})
        torch.save(computed, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(60)
@pytest.mark.filterwarnings("ignore:SISDR dropped 1 of")
def test_compute_syncs_across_two_gloo_processes(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    codes, preds, target = _shard_data()
    whole = _new_metrics()
    _update(whole, codes, preds, target)
    expected = _computed(whole)
    for rank in range(2):
        _assert_same(torch.load(tmp_path / f"rank{rank}.pt"), expected)
