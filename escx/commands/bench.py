"""``escx bench``: codec speed, throughput against the matmul peak, training step, memory."""

from __future__ import annotations

import logging
from pathlib import Path

from escx.benchmark.data_loader import add_data_arguments, run_data_command
from escx.benchmark.onnx_runtime import add_onnx_arguments, run_onnx_command
from escx.benchmark.streaming import add_streaming_arguments, run_streaming_command
from escx.commands.common import ArgumentParser, CommandError, say


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx bench",
        description="Encode/decode time, GFLOP/s against this machine's matmul peak, a training "
        "step and peak memory for ESC-Base: straightforward path vs escx, fp32 vs bf16, eager vs "
        "torch.compile, on the CPU and (when present) the GPU; DAC's 16 kHz models beside it for "
        "parameter and speed ratios. Writes bench.json and bench.md.",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=None,
        help="model config(s), stacked (default: experiments/esc.yaml)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="trained checkpoint instead of --config; also enables the bf16 PESQ check",
    )
    parser.add_argument(
        "--quality-model",
        default=None,
        help="trained checkpoint for the bf16 PESQ check only (default: --model); speed is "
        "still measured on --config / --model",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length coded")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile inference")
    parser.add_argument("--no-train", action="store_true", help="skip the training step")
    parser.add_argument(
        "--no-dac",
        action="store_true",
        help="skip DAC (16 kHz, 12 and 18 codebooks, random weights) coded beside the model",
    )
    parser.add_argument("--train-batch", type=int, default=9)
    parser.add_argument("--train-seconds", type=float, default=3.0)
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument(
        "--compile-train",
        action="store_true",
        help="also time a torch.compile'd training step (compiles for minutes)",
    )
    parser.add_argument(
        "--quality-data",
        default="data/val",
        help="speech for the bf16 PESQ check (with --model or --quality-model)",
    )
    parser.add_argument("--quality-files", type=int, default=16)
    parser.add_argument(
        "--device",
        action="append",
        choices=["cpu", "cuda"],
        default=None,
        help="devices (default: cpu, plus cuda when available)",
    )
    parser.add_argument("-o", "--out", default="results/bench", help="folder for the report")
    add_data_arguments(parser)  # --data DIR: the training data loader instead (data_loader.py)
    add_streaming_arguments(parser)  # --streaming: the streaming coder instead (streaming.py)
    add_onnx_arguments(parser)  # --onnx [DIR]: ONNX Runtime beside escx instead (onnx_runtime.py)
    args = parser.parse_args(argv)
    for name in ("seconds", "repeats", "threads", "train_batch", "train_seconds", "train_repeats"):
        if getattr(args, name) <= 0:
            raise CommandError(f"--{name.replace('_', '-')} must be positive")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"-o {out} is a file; give a folder for the report")
    if args.data is not None:
        logging.basicConfig(level=logging.WARNING, format="escx bench: %(message)s")
        return run_data_command(args, out)
    if args.profile and not args.streaming:
        raise CommandError("--profile goes with --streaming (escx bench --streaming --profile)")
    if args.streaming:
        return run_streaming_command(args, out)
    if args.onnx is not None:
        logging.basicConfig(level=logging.WARNING, format="escx bench: %(message)s")
        return run_onnx_command(args, out)
    for flag, path in (("--model", args.model), ("--quality-model", args.quality_model)):
        if path and not Path(path).is_file():
            raise CommandError(f"{flag} {path}: no such checkpoint")
    quality_model = args.quality_model or args.model
    if args.quality_model and not Path(args.quality_data).is_dir():
        raise CommandError(f"--quality-data {args.quality_data}: no such folder of speech")

    import torch

    from escx.benchmark.report import markdown, write_report
    from escx.benchmark.suite import BenchOptions, run_bench

    devices = args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    if "cuda" in devices and not torch.cuda.is_available():
        raise CommandError("--device cuda: no CUDA device is available")
    quality = args.quality_data if quality_model and Path(args.quality_data).is_dir() else None
    options = BenchOptions(
        configs=args.config or ["experiments/esc.yaml"],
        model=args.model,
        seconds=args.seconds,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        compile=not args.no_compile,
        train=not args.no_train,
        train_batch=args.train_batch,
        train_seconds=args.train_seconds,
        train_repeats=args.train_repeats,
        compile_train=args.compile_train,
        quality_model=quality_model,
        quality_data=quality,
        quality_files=args.quality_files,
        devices=devices,
        dac=not args.no_dac,
    )
    logging.basicConfig(level=logging.WARNING, format="escx bench: %(message)s")
    result = run_bench(options)
    text = markdown(result)
    json_path, md_path = write_report(out, "bench", result, text)
    say(text)
    say(f"written: {json_path}, {md_path}")
    return 0
