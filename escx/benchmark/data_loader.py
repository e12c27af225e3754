"""``escx bench --data DIR``: how many training crops a data-loader worker delivers, against
how many ESC-Base's training step consumes, and so how many workers a run needs.

A sample of ``DIR``'s files is converted to 16 kHz mono FLAC and WAV in a temporary folder and
also written as shards (:mod:`escx.data.sharder`); escx's own data module then serves training
batches (ESC's 3-s crops, batch 9 by default) from the folder and from the shards of each
format, with each worker count asked for, and the clips per second are timed after the first
batch (which includes starting the workers). The training step is ESC-Base's forward, backward
and AdamW step on a batch of the same shape (:mod:`escx.benchmark.training`), on the CPU and on
a GPU when present. Workers needed = step clips/s / clips/s per worker, rounded up, per rank.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from escx.benchmark.report import write_report

log = logging.getLogger(__name__)

CROP_SECONDS = 3.0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``escx bench --data``."""
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="measure the training data loader on a sample of this folder's audio instead "
        "(clips/s per worker, folder and shards, FLAC and WAV) against ESC-Base's training step",
    )
    parser.add_argument("--data-files", type=int, default=96, help="files sampled from --data")
    parser.add_argument("--data-batches", type=int, default=12, help="batches timed per case")
    parser.add_argument(
        "--data-workers", type=int, nargs="+", default=None,
        help="loader worker counts to time (default: 1 and the usable cores)",
    )  # fmt: skip
    parser.add_argument(
        "--step-rate", type=float, default=None,
        help="training steps per second to size the loader for (besides the measured steps)",
    )  # fmt: skip


def _sample_files(folder: Path, count: int) -> list[Path]:
    from escx.audio import find_audio_files
    from escx.data.probe import probe_paths

    files = find_audio_files(folder)
    if not files:
        return []
    picks = [files[round(i * (len(files) - 1) / max(1, count - 1))] for i in range(count)]
    picks = list(dict.fromkeys(picks))
    probes = probe_paths([str(p) for p in picks], 1)
    return [path for path, probe in zip(picks, probes, strict=True) if not probe.error]


def _prepare(files: list[Path], work: Path, max_workers: int) -> dict[str, str]:
    """FLAC and WAV copies (16 kHz mono) and their shards; the source string of each case."""
    from escx.audio import read_audio, write_audio
    from escx.data.sharder import MIN_SHARD_BYTES, write_shards

    sources: dict[str, str] = {}
    for fmt in ("flac", "wav"):
        folder = work / fmt
        folder.mkdir()
        for i, path in enumerate(files):
            audio, _ = read_audio(path, 16000)
            write_audio(folder / f"{i:06d}.{fmt}", audio, 16000)
        total = sum(p.stat().st_size for p in folder.iterdir())
        shards = work / f"{fmt}-shards"
        shards.mkdir()
        # Enough shards that every worker reads whole shards of its own (escx.data.shard_stream).
        size = max(MIN_SHARD_BYTES, total // (4 * max_workers))
        summary = write_shards(folder, shards, size, prefix=fmt, seed=53, workers=1)
        sources[f"folder {fmt.upper()}"] = str(folder)
        sources[f"shards {fmt.upper()}"] = str(shards / summary.pattern)
    return sources


def _time_loader(source: str, workers: int, batch: int, batches: int, index: Path) -> dict:
    from escx.data.datamodule import AudioDataModule

    data = AudioDataModule(
        train=source,
        val=None,
        batch_size=batch,
        num_workers=workers,
        index_dir=str(index),
        segment_samples=round(CROP_SECONDS * 16000),
    )
    data.setup("fit")
    loader = data.train_dataloader()
    seen, start, first = 0, 0.0, True
    while seen < batches:
        for _ in loader:
            if first:  # the first batch also starts the workers: not timed
                first, start = False, time.perf_counter()
                continue
            seen += 1
            if seen >= batches:
                break
    seconds = time.perf_counter() - start
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None:  # stop the persistent workers now, not in a later fork's GC
        iterator._shutdown_workers()
    clips = seen * batch / seconds
    return {"workers": workers, "clips_per_s": clips, "clips_per_s_per_worker": clips / workers}


def _train_steps(configs: list[str], batch: int, repeats: int, devices: list[str]) -> list[dict]:
    import torch

    from escx.benchmark.training import StepVariant, run_step_variant
    from escx.config import build_codec
    from escx.perf import tune_cpu_allocator

    tune_cpu_allocator()
    torch.manual_seed(0)
    codec = build_codec(*configs)
    clips = torch.randn(batch, round(CROP_SECONDS * codec.sample_rate)) * 0.1
    rows = []
    for device in devices:
        for precision in ("fp32", "bf16"):
            variant = StepVariant(f"escx {precision}", precision, "escx")
            row = run_step_variant(codec.to(device), clips.to(device), variant, repeats, 1)
            rows.append({"device": device, "precision": precision,
                         "clips_per_s": row["clips_per_s"], "step_s": row["median_s"]})  # fmt: skip
    return rows


def run_data_bench(
    folder: str, files: int, batches: int, workers: list[int], batch: int, configs: list[str],
    repeats: int, devices: list[str], step_rate: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every loader case and the training step; see the module docstring."""
    sample = _sample_files(Path(folder), files)
    if not sample:
        raise ValueError(f"--data {folder}: no usable audio files")
    work = Path(tempfile.mkdtemp(prefix="escx-bench-data-"))
    try:
        sources = _prepare(sample, work, max(workers))
        loaders = []
        for name, source in sources.items():
            for count in workers:
                log.warning("data loader: %s, %d worker(s)", name, count)
                row = _time_loader(source, count, batch, batches, work / "index")
                loaders.append({"source": name, **row})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = _train_steps(configs, batch, repeats, devices)
    return {
        "data": folder, "files": len(sample), "batch": batch, "crop_seconds": CROP_SECONDS,
        "loaders": loaders, "training": steps, "step_rate": step_rate,
    }  # fmt: skip


def workers_needed(clips_per_s: float, per_worker: float) -> int:
    return max(1, math.ceil(clips_per_s / per_worker))


def data_markdown(result: dict[str, Any]) -> str:
    """The report: loader rates, training-step rates, and the workers each step rate needs."""
    batch = result["batch"]
    lines = [
        f"## Data loader: {result['files']} files of {result['data']}, "
        f"{result['crop_seconds']:g}-s crops, batch {batch}",
        "",
        "| source | workers | clips/s | clips/s per worker |",
        "|---|---:|---:|---:|",
    ]
    for row in result["loaders"]:
        lines.append(f"| {row['source']} | {row['workers']} | {row['clips_per_s']:.1f} | "
                     f"{row['clips_per_s_per_worker']:.1f} |")  # fmt: skip
    per_source: dict[str, float] = {}
    for row in result["loaders"]:  # the single-worker rate is the per-worker figure
        if row["workers"] == 1 or row["source"] not in per_source:
            per_source[row["source"]] = row["clips_per_s_per_worker"]
    consumers = [(f"ESC-Base step, {s['device']} {s['precision']} ({s['step_s']:.2f} s/step)",
                  s["clips_per_s"]) for s in result["training"]]  # fmt: skip
    if result.get("step_rate"):
        consumers.append(
            (f"{result['step_rate']:g} steps/s asked for", result["step_rate"] * batch)
        )
    lines += ["", "| training step | clips/s | " + " | ".join(per_source) + " |",
              "|---|---:|" + "---:|" * len(per_source)]  # fmt: skip
    for name, rate in consumers:
        needs = " | ".join(str(workers_needed(rate, per)) for per in per_source.values())
        lines.append(f"| {name} | {rate:.1f} | {needs} |")
    lines += ["", "Columns after clips/s: loader workers needed per rank for each source."]
    return "\n".join(lines)


def run_data_command(args: argparse.Namespace, out: Path) -> int:
    """``escx bench --data``: measure, write ``data.json`` and ``data.md``, print the report."""
    import torch

    from escx.commands.common import CommandError, say
    from escx.security.resources import check_workers, usable_cores

    if not Path(args.data).is_dir():
        raise CommandError(f"--data {args.data}: no such folder of audio")
    workers = args.data_workers or sorted({1, usable_cores()})
    for count in workers:
        if count < 1:
            raise CommandError(f"--data-workers {count}: give counts of 1 or more")
        try:
            check_workers(count)
        except ValueError as err:  # its message names the fit option; this is --data-workers
            raise CommandError(str(err).replace("data.num_workers", "--data-workers")) from None
    for name in ("data_files", "data_batches"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be >= 1")
    if args.step_rate is not None and not args.step_rate > 0:
        raise CommandError("--step-rate must be positive")
    devices = args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    torch.set_num_threads(args.threads)
    result = run_data_bench(
        args.data, args.data_files, args.data_batches, workers, args.train_batch,
        args.config or ["experiments/esc.yaml"], args.train_repeats, devices, args.step_rate,
    )  # fmt: skip
    text = data_markdown(result)
    json_path, md_path = write_report(out, "data", result, text)
    say(text)
    say(f"written: {json_path}, {md_path}")
    return 0
