"""``make bench``: the speed and memory benchmarks in one run.

1. codec speed: encode/decode medians of every shipped model on 10 s, with ratios to ESC-Base
   measured in the same run (``benchmarks/codec_speed.py``);
2. long-file memory: peak RSS of ``escx compress`` / ``decompress`` on ``--minutes`` of audio
   (``benchmarks/long_file_rss.py``; the issue's target is < 1.5 GB for one hour, which takes
   tens of minutes with ESC-Base on 2 cores, hence 10 minutes with the small codec by default).

    python -m benchmarks.run [--minutes 10] [--rss-model small|esc-base] [--skip-rss]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rss-model", choices=["small", "esc-base"], default="small")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from benchmarks.codec_speed import main as codec_speed

    code = codec_speed(["--threads", str(args.threads)])
    if not args.skip_rss:
        sys.stdout.write(f"\n# long-file memory: {args.minutes:g} min, {args.rss_model} codec\n")
        sys.stdout.flush()
        cmd = [sys.executable, str(HERE / "long_file_rss.py"), "--minutes", str(args.minutes),
               "--model", args.rss_model]  # fmt: skip
        code = code or subprocess.run(cmd).returncode
    return code


if __name__ == "__main__":
    raise SystemExit(main())
