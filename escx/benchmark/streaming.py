"""``escx bench --streaming``: what streaming costs per 20 ms frame, on one thread.

Audio is pushed into :class:`~escx.streaming.StreamEncoder` one code frame (20 ms for ESC) at a
time and every push's codes straight into :class:`~escx.streaming.StreamDecoder`, as a live call
would. Each push's encoder and decoder time is measured as CPU time of the calling thread
(``time.thread_time``, with torch on one thread), so other processes on a shared machine do not
inflate it, and as wall time. Reported per model: p50 and p99 of encoder, decoder and their sum
per frame, the real-time factor (CPU time / audio time), the look-aheads and end-to-end
algorithmic latency (:func:`escx.streaming.latency`), and whether the streamed codes equal
``codec.encode`` of the same audio. Models: ESC-Base (offline, bounded look-ahead) and the causal
ESC-Base (``experiments/esc-causal.yaml``), random weights (speed does not depend on them), or
``--model`` / ``--config``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from escx.benchmark.report import write_report

if TYPE_CHECKING:
    import torch

DEFAULT_MODELS = {
    "ESC-Base": ["experiments/esc.yaml"],
    "causal ESC-Base": ["experiments/esc-causal.yaml"],
}
WARMUP_FRAMES = 50  # pushes before timing: kernels built, caches and buffers in steady state
PROFILE_FRAMES = 100  # pushes under the profiler with --profile, after the timed ones
# Profiler entries that are matrix products or convolutions (the arithmetic of a frame).
PRODUCT_OPS = frozenset(
    {"aten::addmm", "aten::mm", "aten::bmm", "aten::mkldnn_convolution",
     "mkldnn::_linear_pointwise"}
)  # fmt: skip
GOAL_MS = 10.0  # escx's goal: encode + decode p99 per 20 ms frame, causal ESC-Base, one core


def add_streaming_arguments(parser: argparse.ArgumentParser) -> None:
    """The option of ``escx bench --streaming``."""
    parser.add_argument(
        "--streaming",
        action="store_true",
        help="measure the streaming coder instead: per 20 ms frame encoder and decoder CPU time "
        "on one thread (p50, p99), real-time factor, look-ahead and latency, for ESC-Base and "
        "the causal ESC-Base (or --model / --config); --seconds of audio pushed; writes "
        "streaming.json and streaming.md",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --streaming: also run PROFILE_FRAMES more frames per model under PyTorch's "
        "profiler and report operations per frame and the CPU time in matrix products and "
        "convolutions (where the time goes)",
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": 1000 * statistics.median(values),
        "p99_ms": 1000 * _percentile(values, 0.99),
        "max_ms": 1000 * max(values),
    }


def measure_model(
    codec: torch.nn.Module, seconds: float, seed: int = 0, profile: bool = False
) -> dict[str, Any]:
    """Stream ``seconds`` of audio through ``codec`` frame by frame (after a warm-up), then,
    with ``profile``, :data:`PROFILE_FRAMES` more frames under PyTorch's profiler."""
    import torch

    from escx.streaming import StreamDecoder, StreamEncoder, latency

    codec = codec.eval()
    spf, rate = codec.samples_per_frame, int(codec.sample_rate)
    frames = max(1, round(seconds * rate / spf))
    generator = torch.Generator().manual_seed(seed)
    extra = PROFILE_FRAMES if profile else 0
    audio = 0.1 * torch.randn(1, (frames + WARMUP_FRAMES + extra) * spf, generator=generator)
    encoder, decoder = StreamEncoder(codec), StreamDecoder(codec)
    cpu: dict[str, list[float]] = {"encode": [], "decode": [], "total": []}
    wall: dict[str, list[float]] = {"encode": [], "decode": [], "total": []}
    timed = WARMUP_FRAMES + frames
    frame_pieces = audio.split(spf, dim=-1)  # one 20 ms push each; the last `extra` profiled
    pieces = []
    for i, piece in enumerate(frame_pieces[:timed]):
        c0, w0 = time.thread_time(), time.perf_counter()
        codes = encoder.push(piece)
        c1, w1 = time.thread_time(), time.perf_counter()
        decoder.push(codes)
        c2, w2 = time.thread_time(), time.perf_counter()
        pieces.append(codes)
        if i >= WARMUP_FRAMES:
            for store, (a, b, c) in ((cpu, (c0, c1, c2)), (wall, (w0, w1, w2))):
                store["encode"].append(b - a)
                store["decode"].append(c - b)
                store["total"].append(c - a)
    profiled = _profile(encoder, decoder, frame_pieces[timed:], pieces) if profile else None
    pieces.append(encoder.flush())
    streamed = torch.cat(pieces, dim=-1)
    whole = codec.encode(audio, encoder.n_streams)
    lat = latency(codec)
    return {
        "parameters": sum(p.numel() for p in codec.parameters()),
        "frames_timed": frames,
        "frame_ms": lat.ms(lat.frame),
        "cpu": {name: _summary(values) for name, values in cpu.items()},
        "wall": {name: _summary(values) for name, values in wall.items()},
        "rtf": sum(cpu["total"]) / (frames * spf / rate),
        "encoder_lookahead_ms": lat.ms(lat.encoder_lookahead),
        "decoder_lookahead_ms": lat.ms(lat.decoder_lookahead),
        "latency_ms": lat.ms(lat.total),
        "codes_equal": float((streamed == whole).float().mean()),
        **({"profile": profiled} if profiled else {}),
    }


def _profile(encoder: Any, decoder: Any, frames: Sequence, codes_out: list) -> dict[str, float]:
    """Push ``frames`` through ``encoder`` and ``decoder`` under PyTorch's profiler (the codes
    go to ``codes_out``); per frame: operations, their CPU time and the part in
    :data:`PRODUCT_OPS` (the profiler's own cost per operation is included)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for piece in frames:
            codes = encoder.push(piece)
            decoder.push(codes)
            codes_out.append(codes)
    events = prof.key_averages()
    n = len(frames)
    return {
        "frames": n,
        "ops_per_frame": sum(e.count for e in events) / n,
        "op_ms_per_frame": sum(e.self_cpu_time_total for e in events) / n / 1000,
        "product_ms_per_frame": sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_OPS)
        / n
        / 1000,
    }


def markdown(result: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    env = result["environment"]
    lines = [
        f"## Streaming, one 20 ms frame per push ({env['cpu']}, 1 thread, torch "
        f"{env['torch']}, {env['seconds']:g} s of audio per model)",
        "",
        "| model | encode p50 / p99 ms | decode p50 / p99 ms | enc + dec p50 / p99 ms | RTF "
        "| look-ahead enc / dec ms | latency ms | codes = encode |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in result["models"].items():
        c = row["cpu"]
        lines.append(
            f"| {name} | {c['encode']['p50_ms']:.1f} / {c['encode']['p99_ms']:.1f} "
            f"| {c['decode']['p50_ms']:.1f} / {c['decode']['p99_ms']:.1f} "
            f"| {c['total']['p50_ms']:.1f} / {c['total']['p99_ms']:.1f} | {row['rtf']:.2f} "
            f"| {row['encoder_lookahead_ms']:g} / {row['decoder_lookahead_ms']:g} "
            f"| {row['latency_ms']:g} | {100 * row['codes_equal']:.1f} % |"
        )
    lines += [
        "",
        "CPU time of the pushing thread per 20 ms of audio (wall-clock figures are in "
        "streaming.json); RTF = CPU time / audio time; latency = frame + both look-aheads "
        f"(end to end, algorithmic). Goal: enc + dec p99 <= {GOAL_MS:g} ms for the causal "
        "ESC-Base.",
    ]
    profiled = {name: row["profile"] for name, row in result["models"].items() if "profile" in row}
    if profiled:
        lines += [
            "",
            "| model (profiled, enc + dec) | operations per frame | their CPU ms per frame "
            "| of which matrix products and convolutions ms |",
            "|---|---|---|---|",
        ]
        for name, row in profiled.items():
            lines.append(
                f"| {name} | {row['ops_per_frame']:,.0f} | {row['op_ms_per_frame']:.1f} "
                f"| {row['product_ms_per_frame']:.1f} |"
            )
    return "\n".join(lines)


def run_streaming_command(args: argparse.Namespace, out: Path) -> int:
    """Measure, write streaming.json and streaming.md into ``out``, print the table."""
    import torch

    from escx.commands.common import CommandError, say
    from escx.config import build_codec
    from escx.experiments.recipes import config_path

    if args.model and not Path(args.model).is_file():
        raise CommandError(f"--model {args.model}: no such checkpoint")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models: dict[str, Any] = {}
        if args.model:
            from escx.api import load_codec

            models[Path(args.model).name] = measure_model(
                load_codec(args.model).codec, args.seconds, profile=args.profile
            )
        else:
            stacks = {" + ".join(args.config): args.config} if args.config else DEFAULT_MODELS
            for name, configs in stacks.items():
                torch.manual_seed(0)
                codec = build_codec(*(config_path(c) for c in configs))
                models[name] = measure_model(codec, args.seconds, profile=args.profile)
    finally:
        torch.set_num_threads(previous)
    result = {
        "environment": {"torch": torch.__version__, "cpu": _cpu_name(), "seconds": args.seconds},
        "models": models,
    }
    text = markdown(result)
    json_path, md_path = write_report(out, "streaming", result, text)
    say(text)
    say(f"written: {json_path}, {md_path}")
    return 0


def _cpu_name() -> str:
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
