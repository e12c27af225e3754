"""Encode/decode speed of the shipped models on 10 s of audio (CPU, fp32, inference mode).

Reports the median of ``--repeats`` timed calls after 2 warm-up calls, the min-max spread, the
real-time factor, and ratios to ESC-Base measured in the same run (ratios are robust to a busy
machine; absolute seconds are not). Run time does not depend on the weights, so models are
randomly initialised.

    python -m benchmarks.codec_speed [--threads 2] [--repeats 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

import escx

MODELS = {
    "ESC-Base": ["experiments/esc.yaml"],
    "ESC-Large": ["experiments/esc-large.yaml"],
    "rvq-swin": ["experiments/esc.yaml", "experiments/ablations/rvq-swin.yaml"],
    "csrvq-conv": ["experiments/esc.yaml", "experiments/ablations/csrvq-conv.yaml"],
    "rvq-conv": ["experiments/esc.yaml", "experiments/ablations/rvq-conv.yaml"],
}


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.codec_speed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    length = int(args.seconds * 16000)
    audio = torch.randn(1, length) * 0.1
    rows = []
    out = sys.stdout
    out.write(
        f"# codec speed: {args.seconds:g} s of audio, {args.threads} threads, fp32, "
        f"median of {args.repeats} (after 2 warm-ups), torch {torch.__version__}\n\n"
    )
    for name in args.models:
        codec = escx.build_codec(*MODELS[name]).eval()
        with torch.inference_mode():
            for streams in (6, 1):
                codes = codec.encode(audio, streams)
                enc = timed(lambda c=codec, s=streams: c.encode(audio, s), args.repeats)
                dec = timed(lambda c=codec, k=codes: c.decode(k, length), args.repeats)
                rows.append((name, streams, enc, dec))
    base = {
        s: (statistics.median(e), statistics.median(d)) for n, s, e, d in rows if n == "ESC-Base"
    }
    out.write(
        "| model | kbps | encode s (min-max) | decode s (min-max) | RTF enc+dec | "
        "enc / ESC-Base | dec / ESC-Base |\n|---|---|---|---|---|---|---|\n"
    )
    for name, streams, enc, dec in rows:
        e, d = statistics.median(enc), statistics.median(dec)
        be, bd = base.get(streams, (float("nan"), float("nan")))
        out.write(
            f"| {name} | {1.5 * streams:g} | {e:.3f} ({min(enc):.2f}-{max(enc):.2f}) | "
            f"{d:.3f} ({min(dec):.2f}-{max(dec):.2f}) | {(e + d) / args.seconds:.3f} | "
            f"{e / be:.2f} | {d / bd:.2f} |\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
