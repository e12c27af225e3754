"""Chunked vs whole-file coding on real speech: are the seams inaudible?

Concatenates validation speech (``--speech``, default ``data/val`` from ``make data``) to about
``--seconds`` seconds, encodes and decodes it with a random-weight ESC-Base (seed 0) once as a whole
and once in chunks (escx.chunking) for each ``--context`` (in code frames), and reports per context:
the fraction of identical codes, and for decoding the same codes chunked vs whole: max abs
difference, SNR, PESQ-wb and mel distance of the chunked output against the whole-file output.

    python benchmarks/chunked_vs_whole.py --seconds 60 --context 0 10 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

SPEECH = Path(__file__).resolve().parents[1] / "data" / "val"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chunk", type=int, default=500, help="kept frames per chunk (10 s)")
    parser.add_argument("--context", type=int, nargs="+", default=[0, 10, 50])
    parser.add_argument("--speech", type=Path, default=SPEECH)
    args = parser.parse_args()

    from escx.chunking import decode_chunked, encode_chunked
    from escx.codecs.stft_codec import ESC
    from escx.metrics import MelDistance, PESQWideband

    files = sorted(p for p in args.speech.rglob("*") if p.suffix in (".flac", ".wav"))
    if not files:
        raise SystemExit(f"no speech under {args.speech}")
    parts, total = [], 0
    for path in files:
        audio, _ = sf.read(path, dtype="float32")
        parts.append(audio)
        total += audio.shape[0]
        if total >= args.seconds * 16000:
            break
    # An odd length (not a multiple of 320) also exercises the padded last frame.
    x = torch.from_numpy(np.concatenate(parts))[None, : int(args.seconds * 16000) + 123]
    torch.manual_seed(0)
    codec = ESC().eval()
    start = time.perf_counter()
    whole_codes = codec.encode(x, 6)
    whole_audio = codec.decode(whole_codes, x.shape[-1])
    result = {
        "files": len(parts),
        "seconds": x.shape[-1] / 16000,
        "whole_seconds": round(time.perf_counter() - start, 1),
        "contexts": [],
    }
    for context in args.context:
        start = time.perf_counter()
        codes = encode_chunked(codec, x, x.shape[-1], 6, args.chunk, context)
        audio = decode_chunked(codec, whole_codes, x.shape[-1], args.chunk, context)
        diff = audio - whole_audio
        noise = diff.pow(2).sum().item()
        pesq, mel = PESQWideband(), MelDistance()
        pesq.update(audio, whole_audio)
        mel.update(audio, whole_audio)
        result["contexts"].append(
            {
                "context_frames": context,
                "codes_equal": (codes == whole_codes).float().mean().item(),
                "frames_equal": (codes == whole_codes).all(1).all(1).float().mean().item(),
                "max_abs_diff": diff.abs().max().item(),
                "snr_db": 10 * np.log10(whole_audio.pow(2).sum().item() / noise) if noise else None,
                "pesq_vs_whole": float(pesq.compute()),
                "mel_distance_vs_whole": float(mel.compute()),
                "chunked_seconds": round(time.perf_counter() - start, 1),
            }
        )
        sys.stdout.write(json.dumps(result["contexts"][-1]) + "\n")
        sys.stdout.flush()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
