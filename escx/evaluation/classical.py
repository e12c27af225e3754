"""Evaluate the classical reference codecs (Opus, Codec2) into rows shaped like a model's.

Each clip is coded at every bitrate of every classical codec; the decoded audio is scored with the
same metrics, over the same clips, as :func:`escx.evaluation.evaluate_codec` scores a trained
codec, so the rows of both go into one table, one plot and one listening page.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from escx.baselines import ClassicalCodec, load_baseline
from escx.evaluation.rows import Clip, ClipSink, load_clip, quality_fields, quality_metrics
from escx.progress import progress as show_progress


def evaluate_baselines(
    baselines: Sequence[str | ClassicalCodec],
    files: Sequence[Clip],
    bitrates: Mapping[str, Sequence[float]] | None = None,
    progress: bool = False,
    with_stoi: bool = True,
    with_models: bool = True,
    listen: ClipSink | None = None,
    progress_label: str = "classical codecs",
) -> list[dict[str, Any]]:
    """Evaluate classical codecs on ``files`` at each of their bitrates.

    Args:
        baselines: codec names (``opus``, ``codec2``) or loaded codecs.
        files: audio paths (read at 16 kHz, mono) or ``(L,)`` tensors at 16 kHz.
        bitrates: kbps per codec name (default: each codec's ``bitrates``).
        progress: show progress over the files on stderr.
        with_stoi: also compute STOI and ESTOI.
        with_models: also compute the installed model-based metrics.
        listen: called with each clip's original (column None) and each decoding (column
            ``"<codec> <kbps> kbps"``), e.g. :meth:`Listening.labelled`.
        progress_label: the label of the progress display.

    Returns:
        One dict per codec and bitrate with the keys of :func:`evaluate_codec`'s rows that apply
        (``codec``, ``kbps``, ``kbps_measured`` from the payload bytes, the quality metrics,
        ``clips_scored``, ``dropped``, ``encode_rtf``, ``decode_rtf``, ``files``, ``seconds``;
        no ``streams`` nor codebook statistics), plus ``library`` (versions) and ``bandwidth``
        (the audio bandwidth the codec coded).

    Raises:
        ValueError: no files, an unknown codec or bitrate, a missing library.
    """
    codecs = [load_baseline(b) if isinstance(b, str) else b for b in baselines]
    if not files:
        raise ValueError("no files to evaluate")
    bitrates = dict(bitrates or {})
    runs = [(c, float(k)) for c in codecs for k in bitrates.get(c.name, c.bitrates)]
    for codec, kbps in runs:
        codec.check(kbps)
    rate = ClassicalCodec.sample_rate
    quality = {run: quality_metrics(rate, with_stoi, with_models) for run in runs}
    payload = dict.fromkeys(runs, 0)
    bands: dict[tuple, set[str]] = {run: set() for run in runs}
    enc_rtf: dict[tuple, list[float]] = {run: [] for run in runs}
    dec_rtf: dict[tuple, list[float]] = {run: [] for run in runs}
    seconds = 0.0
    for index, clip in enumerate(show_progress(files, progress_label, enabled=progress)):
        audio, name = load_clip(clip, rate)
        duration = audio.numel() / rate
        seconds += duration
        if listen is not None:
            listen(index, name, None, audio)
        for codec, kbps in runs:
            coded = codec.code(audio.numpy(), kbps)
            decoded = torch.from_numpy(coded.audio)
            if listen is not None:
                listen(index, name, codec.label(kbps), decoded)
            quality[codec, kbps].update(decoded[None], audio[None])
            payload[codec, kbps] += coded.payload_bytes
            bands[codec, kbps].add(coded.bandwidth)
            enc_rtf[codec, kbps].append(coded.encode_seconds / duration)
            dec_rtf[codec, kbps].append(coded.decode_seconds / duration)
    return [
        {
            "codec": codec.name,
            "kbps": kbps,
            "kbps_measured": 8 * payload[codec, kbps] / seconds / 1000,
            **quality_fields(quality[codec, kbps]),
            "bandwidth": "/".join(sorted(bands[codec, kbps])),
            "encode_rtf": statistics.median(enc_rtf[codec, kbps]),
            "decode_rtf": statistics.median(dec_rtf[codec, kbps]),
            "files": len(files),
            "seconds": seconds,
            "library": codec.version(),
        }
        for codec, kbps in runs
    ]


def describe_baselines(codecs: Sequence[ClassicalCodec], rows: Sequence[dict[str, Any]]) -> str:
    """A caption sentence per classical codec: library, how it was run, the bandwidth per kbps."""
    parts = []
    for codec in codecs:
        bands = [f"{r['kbps']:g} kbps {r['bandwidth']}" for r in rows if r["codec"] == codec.name]
        parts.append(f"{codec.describe()} ({', '.join(bands)}).")
    return " ".join(parts)
