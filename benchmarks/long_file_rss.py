"""Peak memory of ``escx compress`` / ``escx decompress`` on a long file.

Writes ``--minutes`` of synthetic 16 kHz speech-like audio to a temporary FLAC (block by block, so
the benchmark itself stays small), saves a codec with random weights, then runs each command in a
fresh Python process and reads that process's peak resident set size with
``resource.getrusage``. The target is < 1.5 GB for one hour.

    python benchmarks/long_file_rss.py                    # 60 min, small codec
    python benchmarks/long_file_rss.py --minutes 10 --model esc-base

Prints one JSON object (and writes it with ``--json PATH``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
SMALL = {
    "class_path": "STFTCodec",
    "init_args": {
        "encoder": {
            "class_path": "SwinEncoder",
            "init_args": {"dims": [8, 8, 12, 12, 16, 16], "heads": [1, 1, 1, 1, 1]},
        },
        "decoder": {
            "class_path": "SwinDecoder",
            "init_args": {"dims": [16, 16, 12, 12, 8, 8], "heads": [1, 1, 1, 1, 1]},
        },
        "quantizer": {"class_path": "CrossScaleRVQ", "init_args": {"codebook_dims": [4] * 6}},
    },
}
ESC_BASE = {  # experiments/esc.yaml
    "class_path": "STFTCodec",
    "init_args": {
        "encoder": {"class_path": "SwinEncoder"},
        "decoder": {"class_path": "SwinDecoder"},
        "quantizer": {"class_path": "CrossScaleRVQ", "init_args": {"codebook_dims": [8] * 6}},
    },
}

# Runs one escx command in this fresh process and reports its own peak RSS (ru_maxrss is in KiB
# on Linux).
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
from escx.cli import main
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rc": code, "seconds": time.perf_counter() - start, "peak_rss_mb": peak}))
"""
BASELINE = """
import json, resource
import torch, escx.api, escx.audio, escx.bitstream  # what the commands import
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_long_audio(path: Path, minutes: float, block_seconds: int = 10) -> int:
    """Synthetic speech-like audio (gliding harmonics, syllable envelope, noise), in blocks."""
    rng = np.random.default_rng(0)
    total = int(minutes * 60 * SAMPLE_RATE)
    block = block_seconds * SAMPLE_RATE
    phase = 0.0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16", format="FLAC") as file:
        for start in range(0, total, block):
            t = (start + np.arange(min(block, total - start))) / SAMPLE_RATE
            f0 = 120 + 60 * np.sin(2 * np.pi * 0.3 * t) + 20 * np.sin(2 * np.pi * 2.1 * t)
            phases = phase + 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
            phase = float(phases[-1])
            voiced = sum(np.sin(k * phases) / k for k in range(1, 8))
            envelope = np.clip(np.sin(2 * np.pi * 3.1 * t), 0, None) ** 0.5
            audio = 0.15 * voiced * envelope + 0.01 * rng.standard_normal(t.shape[0])
            file.write(audio.astype(np.float32))
    return total


def run_child(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--model", choices=["small", "esc-base"], default="small")
    parser.add_argument("--kbps", type=float, default=9.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()

    import torch

    from escx.api import save_codec_checkpoint
    from escx.config import build_codec

    with tempfile.TemporaryDirectory(prefix="escx-rss-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        samples = write_long_audio(folder / "long.flac", args.minutes)
        write_seconds = time.perf_counter() - start
        torch.manual_seed(0)
        config = SMALL if args.model == "small" else ESC_BASE
        save_codec_checkpoint(build_codec({"codec": config}), config, folder / "model.ckpt")
        model = str(folder / "model.ckpt")
        baseline = json.loads(
            subprocess.run(
                [sys.executable, "-c", BASELINE], capture_output=True, text=True, check=True
            ).stdout
        )
        compress = run_child(
            ["compress", str(folder / "long.flac"), "-o", str(folder / "long.escx"),
             "--model", model, "--kbps", str(args.kbps)]
        )  # fmt: skip
        decompress = run_child(
            ["decompress", str(folder / "long.escx"), "-o", str(folder / "long.wav"),
             "--model", model]
        )  # fmt: skip
        out_frames = sf.info(folder / "long.wav").frames
        result = {
            "model": args.model,
            "audio_seconds": samples / SAMPLE_RATE,
            "flac_bytes": (folder / "long.flac").stat().st_size,
            "escx_bytes": (folder / "long.escx").stat().st_size,
            "write_seconds": round(write_seconds, 1),
            "baseline_import_rss_mb": round(baseline["peak_rss_mb"], 1),
            "compress": {k: round(v, 2) for k, v in compress.items()},
            "decompress": {k: round(v, 2) for k, v in decompress.items()},
            "output_length_matches": out_frames == samples,
            "torch_threads": torch.get_num_threads(),
        }
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")
    worst = max(compress["peak_rss_mb"], decompress["peak_rss_mb"])
    return 0 if worst < 1536 and result["output_length_matches"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
