"""A SYNTHETIC speech-like corpus, for when there is neither network nor local speech.

This is not speech. It imitates the parts of speech a codec has to code: a glottal pulse train
whose pitch drifts slowly within 80-250 Hz, shaped by moving vowel formants (a cascade of
resonators, as in formant synthesisers), syllable-rate loudness envelopes, noise bursts for
fricatives and plosives, and pauses. Each "speaker" has its own pitch range, vocal-tract length
(formant scale), breathiness and speaking rate. It is enough to smoke-test training and evaluation
end to end; a model trained on it will not code real speech well.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from escx.audio import write_audio

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MARKER = "SYNTHETIC"
# F1-F3 (Hz) of a few vowels for an adult male vocal tract (Peterson & Barney-like averages).
VOWELS = np.array(
    [(270, 2290, 3010), (530, 1840, 2480), (730, 1090, 2440), (570, 840, 2410), (300, 870, 2240),
     (660, 1720, 2410), (490, 1350, 1690)],
    dtype=np.float64,
)  # fmt: skip
BANDWIDTHS = np.array([70.0, 100.0, 140.0, 220.0])
# Noise bands (Hz) for fricative-like consonants: s, sh, f, h.
FRICATIVES = ((3800.0, 7500.0), (2000.0, 4500.0), (900.0, 7600.0), (400.0, 3200.0))
BLOCK = 160  # samples per control block (10 ms): formants and pitch change per block


@dataclass(frozen=True)
class Speaker:
    """Voice parameters of one synthetic speaker."""

    f0: float  # median pitch in Hz
    formant_scale: float  # >1: shorter vocal tract (higher formants)
    breathiness: float  # aspiration noise relative to the voiced source
    rate: float  # syllables per second
    tilt: float  # one-pole low-pass coefficient on the source (darker voice when larger)


def random_speaker(rng: np.random.Generator) -> Speaker:
    """Draw a speaker; roughly half low-pitched (longer tract), half high-pitched."""
    high = rng.random() < 0.5
    f0 = rng.uniform(165, 215) if high else rng.uniform(90, 135)
    scale = rng.uniform(1.08, 1.2) if high else rng.uniform(0.9, 1.02)
    return Speaker(f0, scale, rng.uniform(0.01, 0.08), rng.uniform(3.5, 6.0), rng.uniform(0.0, 0.3))


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.hanning(width + 2)[1:-1]
    pad = np.pad(x, [(width, width)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    out = np.apply_along_axis(lambda c: np.convolve(c, kernel / kernel.sum(), "same"), 0, pad)
    return out[width:-width]


def _timeline(rng: np.random.Generator, spk: Speaker, n_blocks: int):
    """Per-block voicing, formant targets and (block, band) fricative events."""
    voice = np.zeros(n_blocks)
    targets = np.zeros((n_blocks, 3))
    events: list[tuple[int, int, int]] = []  # (start block, length in blocks, band)
    vowel = VOWELS[rng.integers(len(VOWELS))]
    t = int(rng.integers(5, 25))
    per_syllable = 100.0 / spk.rate  # blocks per syllable
    while t < n_blocks - 10:
        if rng.random() < 0.15:  # pause between "words"
            t += int(rng.uniform(8, 35))
            continue
        if rng.random() < 0.6:  # onset consonant
            if rng.random() < 0.7:
                length = int(rng.uniform(5, 12))
                events.append((t, length, int(rng.integers(len(FRICATIVES)))))
                t += length
            else:  # plosive: closure silence, then a short burst
                t += int(rng.uniform(3, 6))
                events.append((t, 2, int(rng.integers(len(FRICATIVES)))))
                t += 1
        length = max(6, int(per_syllable * rng.uniform(0.5, 1.0)))
        end = min(t + length, n_blocks)
        vowel = VOWELS[rng.integers(len(VOWELS))] if rng.random() < 0.8 else vowel
        voice[t:end] = np.hanning(end - t + 2)[1:-1] ** 0.5 * rng.uniform(0.5, 1.0)
        targets[t:end] = vowel * spk.formant_scale
        t = end
    # Formants glide between vowels (coarticulation); hold the last target through silence.
    filled = targets.copy()
    last = VOWELS[2] * spk.formant_scale
    for i in range(n_blocks):
        last = filled[i] = targets[i] if voice[i] > 0 else last
    return voice, _smooth(filled, 7), events


def synthesize_utterance(
    rng: np.random.Generator, speaker: Speaker, seconds: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """One speech-like utterance.

    Args:
        rng: random source (seed it for reproducible audio).
        speaker: voice parameters.
        seconds: length.
        sample_rate: output rate in Hz.

    Returns:
        float32 samples, shape (round(seconds * sample_rate),), peak below 1.
    """
    n = round(seconds * sample_rate)
    block = BLOCK * sample_rate // SAMPLE_RATE
    n_blocks = -(-n // block)
    voice, formants, events = _timeline(rng, speaker, n_blocks)
    # Pitch: slow drift and declination around the speaker's median, kept in 80-250 Hz.
    tb = np.arange(n_blocks) / (sample_rate / block)
    drift = 0.12 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * tb + rng.uniform(0, 6.3))
    wobble = _smooth(rng.normal(0, 0.06, n_blocks), 15)
    f0 = np.clip(speaker.f0 * (1 + drift + wobble - 0.1 * tb / max(tb[-1], 1e-6)), 80, 250)
    ts = np.arange(n) / block
    f0_s = np.interp(ts, np.arange(n_blocks), f0)
    amp = np.interp(ts, np.arange(n_blocks), voice)
    # Rosenberg glottal flow (opening 40 %, closing 16 % of a period); its derivative is the
    # excitation (flow derivative also stands in for lip radiation).
    phase = np.cumsum(f0_s / sample_rate) % 1.0
    flow = np.where(
        phase < 0.4,
        0.5 * (1 - np.cos(np.pi * phase / 0.4)),
        np.where(phase < 0.56, np.cos(0.5 * np.pi * (phase - 0.4) / 0.16), 0.0),
    )
    source = np.diff(flow, prepend=0.0) * amp * 8.0
    source += speaker.breathiness * flow * amp * rng.standard_normal(n)
    source = sosfilt(np.array([[1.0, 0, 0, 1.0, -speaker.tilt, 0]]), source)
    # Cascade of 4 resonators with unity gain at DC, coefficients updated every block.
    out = np.zeros(n)
    zi = np.zeros((4, 2))
    nyq = sample_rate / 2
    for b in range(n_blocks):
        freqs = np.append(formants[b], 3500.0 * speaker.formant_scale)
        freqs = np.minimum(freqs, nyq * 0.9)
        r = np.exp(-np.pi * BANDWIDTHS / sample_rate)
        c1, c2 = 2 * r * np.cos(2 * np.pi * freqs / sample_rate), -(r**2)
        sos = np.stack([1 - c1 - c2, 0 * r, 0 * r, 1 + 0 * r, -c1, -c2], axis=1)
        seg = slice(b * block, min((b + 1) * block, n))
        out[seg], zi = sosfilt(sos, source[seg], zi=zi)
    # Fricatives and bursts: band-limited noise with a smooth envelope, added after the tract,
    # 4-15 dB below the vowels' level as in speech.
    voiced_rms = np.sqrt(np.mean(out[amp > 0.3] ** 2)) if np.any(amp > 0.3) else 0.1
    for start, length, band in events:
        lo, hi = FRICATIVES[band]
        a, z = start * block, min((start + length) * block, n)
        if z - a < 16:
            continue
        sos = butter(4, [lo / nyq, min(hi / nyq, 0.99)], btype="band", output="sos")
        noise = sosfilt(sos, rng.standard_normal(z - a))
        noise *= np.hanning(z - a) * voiced_rms * rng.uniform(0.18, 0.6) / (noise.std() + 1e-12)
        out[a:z] += noise
    out = sosfilt(butter(2, 60 / nyq, btype="high", output="sos"), out)
    out *= rng.uniform(0.3, 0.8) / max(np.abs(out).max(), 1e-9)
    out += 3e-4 * rng.standard_normal(n)  # a faint noise floor instead of digital silence
    return out.astype(np.float32)


def _readme(n_files: int, seconds: float, seed: int, n_speakers: int) -> str:
    return (
        "SYNTHETIC AUDIO - NOT REAL SPEECH\n\n"
        f"Generated by escx.data.synthetic (seed {seed}): {n_files} files of {seconds:g} s at "
        f"16 kHz, {n_speakers} synthetic 'speakers'. Glottal pulse trains with drifting pitch "
        "(80-250 Hz) through moving formant resonators, syllable envelopes, noise bursts for\n"
        "fricatives, and pauses. Use it to smoke-test the pipeline only: codecs trained on it\n"
        "will not code real speech well. For real data run\n"
        "`python -m escx.data.prepare --source DIR --force` or `... --hf --force`\n"
        "(see data/README.md).\n"
    )


def generate_corpus(
    out_dir: str | os.PathLike,
    n_files: int,
    seconds: float = 4.0,
    seed: int = 0,
    n_speakers: int | None = None,
    first_speaker: int = 0,
    fmt: str = "flac",
) -> list[Path]:
    """Write a synthetic corpus: ``synthetic-spkNNN_MMMM.<fmt>`` files, README.txt and SYNTHETIC.

    Files of different speakers share no parameters, so speaker-disjoint splits can be made by
    giving train and validation different ``first_speaker`` ranges.

    Args:
        out_dir: folder to write into (created if needed).
        n_files: number of files.
        seconds: length of each file.
        seed: base seed; a file depends only on (seed, speaker, file index).
        n_speakers: number of speakers (default: one per 8 files).
        first_speaker: id of the first speaker.
        fmt: ``"flac"`` or ``"wav"``.

    Returns:
        The written audio files, sorted.
    """
    if n_files <= 0 or seconds <= 0:
        raise ValueError(f"need n_files > 0 and seconds > 0, got {n_files} and {seconds}")
    if fmt not in ("flac", "wav"):
        raise ValueError(f"fmt must be 'flac' or 'wav', got {fmt!r}")
    n_speakers = n_speakers or max(1, n_files // 8)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    speakers = [
        random_speaker(np.random.default_rng([seed, first_speaker + k, 1 << 20]))
        for k in range(n_speakers)
    ]
    paths = []
    for i in range(n_files):
        spk = first_speaker + i % n_speakers
        rng = np.random.default_rng([seed, spk, i])
        audio = synthesize_utterance(rng, speakers[i % n_speakers], seconds)
        paths.append(write_audio(out / f"synthetic-spk{spk:03d}_{i:04d}.{fmt}", audio, SAMPLE_RATE))
    (out / "README.txt").write_text(_readme(n_files, seconds, seed, n_speakers))
    (out / MARKER).write_text("synthetic speech-like audio; see README.txt\n")
    log.info("wrote %d SYNTHETIC files to %s", n_files, out)
    return sorted(paths)
