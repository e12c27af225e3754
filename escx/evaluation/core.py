"""Evaluate a codec at each stream count on a set of files (docs/esc.md §14 protocol, plus speed).

For every stream count ``s``, each clip is encoded at ``s`` streams, packed into an ``.escx``
file in memory (its size gives the real bitrate, container overhead included) and decoded. Per-clip
PESQ-wb, STOI, ESTOI, SI-SDR and mel distance, and with the ``eval`` extra DNSMOS, ViSQOL and
speaker similarity, are averaged over the clips that every metric can score (each row counts the
clips each metric dropped); codebook utilisation is ESC's bitrate utilisation from one
code histogram over the whole set; encode and decode speed are real-time factors (compute seconds /
audio seconds, median over clips). A ``listen`` callback receives the original and decoded audio
of every clip (the listening report keeps a few). Only the :class:`~escx.codecs.base.Codec`
interface is used, so any codec family (STFT or waveform) is evaluated alike; the classical
reference codecs are evaluated by :func:`escx.evaluation.classical.evaluate_baselines` into rows
of the same shape.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from escx.api import CodecHandle
from escx.codecs.base import Codec
from escx.evaluation.rows import (
    Clip,
    ClipSink,
    load_clip,
    quality_fields,
    quality_metrics,
    timed,
)
from escx.metrics import CodebookUsage
from escx.progress import progress as show_progress


def parse_streams(spec: str | Sequence[int] | None, max_streams: int) -> list[int]:
    """Stream counts from ``"1-6"``, ``"1,3,6"``, ``"6"`` or a list; None gives all of them.

    Raises:
        ValueError: malformed text or counts outside ``1..max_streams``.
    """
    if spec is None:
        return list(range(1, max_streams + 1))
    values: list[int] = []
    if isinstance(spec, str):
        try:
            for part in filter(None, (p.strip() for p in spec.split(","))):
                lo, dash, hi = part.partition("-")
                values += range(int(lo), int(hi if dash else lo) + 1)
        except ValueError:
            raise ValueError(
                f"--streams {spec!r} is not a list of stream counts; write e.g. 1-6 or 1,3,6"
            ) from None
    else:
        values = [int(v) for v in spec]
    bad = [v for v in values if not 1 <= v <= max_streams]
    if not values or bad:
        raise ValueError(
            f"stream counts must lie in 1..{max_streams} (the model's streams), got {spec!r}"
        )
    return sorted(set(values))


def evaluate_codec(
    model: CodecHandle | Codec,
    files: Sequence[Clip],
    streams: Sequence[int] | None = None,
    progress: bool = False,
    with_stoi: bool = True,
    with_models: bool = True,
    listen: ClipSink | None = None,
    progress_label: str = "eval",
    name: str | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``model`` on ``files`` at each stream count.

    Args:
        model: a loaded :class:`~escx.api.CodecHandle` or a bare codec.
        files: audio paths (read at the codec rate, mono) or (L,) tensors at the codec rate.
        streams: stream counts to test (default: all).
        progress: show progress over the files on stderr (a bar in a terminal, else lines).
        with_stoi: also compute STOI (the slowest of the signal metrics).
        with_models: also compute the model-based metrics that are installed (DNSMOS, ViSQOL,
            speaker similarity: the ``eval`` extra); about 1.5 s per clip and bitrate.
        listen: called with each clip's original (stream count None) and its decoding at each
            stream count, e.g. a :class:`~escx.evaluation.listening.Listening` recorder.
        progress_label: the label of the progress display.
        name: the ``codec`` field of the rows (default: the checkpoint's file stem, or the
            codec's class name).

    Returns:
        One dict per stream count with keys ``codec``, ``streams``, ``kbps`` (nominal),
        ``kbps_measured``, ``pesq``, ``stoi``, ``estoi``, ``sisdr``, ``mel_distance``,
        ``clips_scored`` (clips every metric scored: the means are over these),
        ``dropped`` (``{metric: clips it could not score}``), ``bitrate_utilization``,
        ``codebook_usage`` (fraction of entries used, mean over codebooks),
        ``codebook_utilization`` (per stream and group, a list of lists), ``encode_rtf``,
        ``decode_rtf``, ``files`` and ``seconds``; with ``with_models`` also those of
        ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``visqol`` and ``speaker_sim`` whose
        packages are installed. A metric that no clip could score (or that was not computed)
        is None.
    """
    handle = model if isinstance(model, CodecHandle) else CodecHandle(model)
    codec, rate = handle.codec, handle.sample_rate
    streams = parse_streams(streams, codec.max_streams)
    if not files:
        raise ValueError("no files to evaluate")
    if name is None:
        name = handle.path.stem if handle.path else type(codec).__name__
    quality = {s: quality_metrics(rate, with_stoi, with_models) for s in streams}
    usage = {
        s: CodebookUsage(codec.max_streams, codec.num_groups, codec.codebook_size) for s in streams
    }
    bits = dict.fromkeys(streams, 0)
    enc_rtf: dict[int, list[float]] = {s: [] for s in streams}
    dec_rtf: dict[int, list[float]] = {s: [] for s in streams}
    seconds = 0.0
    # Warm-up: the first call pays one-off costs (allocator, kernel selection) that are not speed.
    handle.decode(handle.encode(torch.zeros(rate), n_streams=streams[-1]), rate)
    for index, clip in enumerate(show_progress(files, progress_label, enabled=progress)):
        audio, clip_name = load_clip(clip, rate)
        length, duration = audio.shape[-1], audio.shape[-1] / rate
        seconds += duration
        if listen is not None:
            listen(index, clip_name, None, audio)
        for s in streams:
            codes, t_enc = timed(handle.encode, audio, n_streams=s)
            bits[s] += 8 * len(handle.pack(codes[0], length))
            decoded, t_dec = timed(handle.decode, codes, length)
            if listen is not None:
                listen(index, clip_name, s, decoded[0])
            quality[s].update(decoded, audio[None])
            usage[s].update(codes)
            enc_rtf[s].append(t_enc / duration)
            dec_rtf[s].append(t_dec / duration)
    rows = []
    for s in streams:
        stats = usage[s].compute()
        per_codebook = [
            [
                round(float(stats[f"s{i}g{j}/utilization"]), 6)
                for j in range(1, codec.num_groups + 1)
            ]
            for i in range(1, s + 1)
        ]
        rows.append(
            {
                "codec": name,
                "streams": s,
                "kbps": handle.kbps(s),
                "kbps_measured": bits[s] / seconds / 1000,
                **quality_fields(quality[s]),
                "bitrate_utilization": float(usage[s].bitrate_utilization(s)),
                "codebook_usage": float(stats["usage"]),
                "codebook_utilization": per_codebook,
                "encode_rtf": statistics.median(enc_rtf[s]),
                "decode_rtf": statistics.median(dec_rtf[s]),
                "files": len(files),
                "seconds": seconds,
            }
        )
    return rows


def describe(handle: CodecHandle, data: str | Path, rows: list[dict[str, Any]]) -> str:
    """A caption naming the model and the data (for reports)."""
    model = handle.path.name if handle.path else type(handle.codec).__name__
    first = rows[0] if rows else {"files": 0, "seconds": 0.0}
    return (
        f"Model {model} (fingerprint {handle.fingerprint.hex()}) on {data}: {first['files']} "
        f"files, {first['seconds']:.1f} s. Quality metrics are means over the clips that every "
        "metric could score (clips; dropped per metric); kbps measured "
        "from the .escx sizes; RTF = compute time / audio duration (median over clips, "
        f"{torch.get_num_threads()} threads on {handle.device})."
    )
