"""Fast recipe probe: how quickly a codec's auto-encoder learns under a loss and optimizer.

A minimal training loop, for comparing losses, learning rates, schedules and batch shapes in
minutes before committing to full ``escx fit`` runs. It trains with the quantizer bypassed (the
pre-training phase of ESC's recipe, where the decoder first learns to reconstruct) on random
crops held in memory, and every ``--eval-every`` steps prints SI-SDR and PESQ-wb on the first 3 s
of ``--eval-files`` validation files as one JSON line. The losses are escx's own
(:class:`~escx.training.objective.Objective` over ``--loss``), so a finding carries over to a
recipe overlay unchanged. docs/recipes.md lists the probes behind the quick recipe.

    python benchmarks/recipe_probe.py --data DIR --loss '{"stft": 1, "mel": 0.25}' --lr 1e-3
    python benchmarks/recipe_probe.py --data DIR --batch 4 --segment 8000 --lr 3e-3 \
        --warmup 100 --cosine --loss '{"compressed_spectrum": 1, "waveform": 10, "mel": 0.25}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

import escx
from escx.audio import find_audio_files, read_audio
from escx.metrics import PESQWideband
from escx.training.lr_schedule import WarmupCosineLR
from escx.training.objective import Objective

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "experiments" / "esc.yaml", ROOT / "experiments" / "tiny.yaml"]
EVAL_SAMPLES = 48_000


def load_clips(folder: Path, min_samples: int) -> list[torch.Tensor]:
    """Every audio file of ``folder`` at 16 kHz, as 1-D tensors, those shorter dropped."""
    clips = [read_audio(path, 16_000)[0] for path in find_audio_files(folder)]
    return [clip for clip in clips if clip.numel() > min_samples]


def eval_batch(folder: Path, files: int) -> torch.Tensor:
    """(files, 48000): the first 3 s of every third validation file, zero-padded."""
    clips = [read_audio(path, 16_000)[0] for path in find_audio_files(folder)][::3][:files]
    cuts = [clip[:EVAL_SAMPLES] for clip in clips]
    padded = [torch.nn.functional.pad(cut, (0, EVAL_SAMPLES - cut.numel())) for cut in cuts]
    return torch.stack(padded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/recipe_probe.py")
    parser.add_argument("--data", type=Path, required=True, help="folder with train/ and val/")
    parser.add_argument("--loss", default='{"stft": 1, "mel": 0.25}', help="loss_weights (JSON)")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--cosine", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--segment", type=int, default=16_000, help="crop length in samples")
    parser.add_argument("--clip", type=float, default=0.5, help="gradient-norm clip (ESC: 0.5)")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--eval-files", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", action="append", default=[], help="extra config overlays")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    codec = escx.build_codec(*CONFIGS, *args.config)
    train = load_clips(args.data / "train", args.segment)
    val = eval_batch(args.data / "val", args.eval_files)
    objective = Objective(json.loads(args.loss), sample_rate=codec.sample_rate)
    optimizer = torch.optim.AdamW(codec.parameters(), lr=args.lr, weight_decay=0.01)
    # The recipes' own schedule: linear warmup, then cosine decay to 0 (or a constant rate).
    schedule = WarmupCosineLR(
        optimizer, args.warmup, args.steps, final_ratio=0.0 if args.cosine else 1.0
    )
    draws = torch.Generator().manual_seed(args.seed + 1)
    start = time.perf_counter()
    for step in range(args.steps):
        picks = torch.randint(len(train), (args.batch,), generator=draws).tolist()
        crops = []
        for index in picks:
            clip = train[index]
            offset = int(torch.randint(clip.numel() - args.segment, (), generator=draws))
            crops.append(clip[offset : offset + args.segment])
        audio = torch.stack(crops)
        out = codec(audio, codec.max_streams, bypass_quantizer=True)
        terms = objective.generator_terms(audio, out)
        optimizer.zero_grad(set_to_none=True)
        objective.total(terms).backward()
        torch.nn.utils.clip_grad_norm_(codec.parameters(), args.clip)
        optimizer.step()
        schedule.step()
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            codec.eval()
            with torch.no_grad():
                pred = codec(val, codec.max_streams, bypass_quantizer=True).audio
            codec.train()
            pesq = PESQWideband()
            pesq.update(pred, val)
            row = {
                "step": step + 1,
                "seconds": round(time.perf_counter() - start),
                "sisdr": round(float(scale_invariant_signal_distortion_ratio(pred, val).mean()), 2),
                "pesq": round(float(pesq.compute()), 3),
                "loss": {name: round(float(value.detach()), 4) for name, value in terms.items()},
            }
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
