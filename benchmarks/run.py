"""``make bench``: ``escx bench`` followed by the long-file memory benchmark.

1. ``escx bench`` (:mod:`escx.benchmark.suite`): ESC-Base on 10 s at 1.5 and 9 kbps, encode and
   decode medians, real-time factor, GFLOP/s against this machine's matmul peak measured in the
   same run (fp32 and bf16), straightforward path vs escx vs ``torch.compile``, one training step
   (batch 9 x 3 s), peak memory; JSON and Markdown in ``results/bench/``.
2. long-file memory: peak RSS of ``escx compress`` / ``decompress`` on ``--minutes`` of audio
   (``benchmarks/long_file_rss.py``; the target is < 1.5 GB for one hour, which takes tens of
   minutes with ESC-Base on 2 cores, hence 10 minutes with the small codec by default).

    python -m benchmarks.run [--minutes 10] [--rss-model small|esc-base] [--skip-rss] [-- ARGS]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bench_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rss-model", choices=["small", "esc-base"], default="small")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args(own)
    code = subprocess.run([sys.executable, "-m", "escx.cli", "bench", *bench_args]).returncode
    if not args.skip_rss:
        sys.stdout.write(f"\n# long-file memory: {args.minutes:g} min, {args.rss_model} codec\n")
        sys.stdout.flush()
        cmd = [sys.executable, str(HERE / "long_file_rss.py"), "--minutes", str(args.minutes),
               "--model", args.rss_model]  # fmt: skip
        code = code or subprocess.run(cmd).returncode
    return code


if __name__ == "__main__":
    raise SystemExit(main())
