"""``escx bench --onnx``: ONNX Runtime against escx's eager path, in the same run.

Encode and decode of the same audio (10 s by default) at the lowest and highest bitrate (1.5 and
9 kbps for ESC), with 1 and 2 threads, by escx (its default inference path, eager PyTorch) and by
the exported graphs in ONNX Runtime (fp32, and int8 where the export has it); medians after
warm-up, and the exported files' sizes beside the checkpoint's.

The exported encoder always computes the codes of every stream (one graph serves every bitrate),
so its time is the same at every bitrate, while escx's encoder runs only the decoder stages the
requested streams need.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from escx.benchmark.measure import time_calls
from escx.benchmark.report import write_report

log = logging.getLogger(__name__)

THREADS = (1, 2)


def add_onnx_arguments(parser: argparse.ArgumentParser) -> None:
    """The option of ``escx bench --onnx [DIR]``."""
    parser.add_argument(
        "--onnx",
        nargs="?",
        const="",
        default=None,
        metavar="DIR",
        help="measure ONNX Runtime instead: encode and decode of --seconds of audio at the lowest "
        "and highest bitrate, 1 and 2 threads, beside escx's eager path, and the exported files' "
        "sizes; DIR is an escx export of --model (without DIR the model is exported first, "
        "which takes minutes); writes onnx.json and onnx.md",
    )


def run_onnx_command(args: argparse.Namespace, out: Path) -> int:
    """Check the options, measure, write onnx.json and onnx.md into ``out``, print the table."""
    from escx.commands.common import CommandError, say

    if args.model and not Path(args.model).is_file():
        raise CommandError(f"--model {args.model}: no such checkpoint")
    if args.onnx and not Path(args.onnx).is_dir():
        raise CommandError(f"--onnx {args.onnx}: no such folder; give an escx export folder")
    try:
        text = bench_onnx(args.model, args.config, args.onnx, args.seconds, args.repeats,
                          args.warmup, out)  # fmt: skip
    except ImportError as error:
        raise CommandError(f"escx bench --onnx needs onnxruntime ({error})") from None
    say(text)
    say(f"written: {out / 'onnx.json'}, {out / 'onnx.md'}")
    return 0


def _row(engine: str, threads: int, op: str, kbps: float, seconds: float, timing) -> dict:
    return {
        "engine": engine, "threads": threads, "op": op, "kbps": kbps, **timing.as_dict(),
        "rtf": timing.median / seconds,
    }  # fmt: skip


def run_onnx_bench(
    handle, folder: Path, seconds: float, repeats: int, warmup: int
) -> dict[str, Any]:
    """Time escx and ONNX Runtime on the same audio; returns the JSON-ready result.

    Args:
        handle: the benchmarked codec (:class:`escx.api.CodecHandle`).
        folder: its export (``escx export``), checked to come from the same weights.
        seconds: audio length.
        repeats: timed calls per case (median reported).
        warmup: untimed calls first.
    """
    from escx.export.runtime import OnnxCodec

    codec = handle.codec.eval()
    description = OnnxCodec.check_folder(folder, handle.fingerprint)
    rate = handle.sample_rate
    length = int(seconds * rate)
    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(1, length, generator=generator) * 0.1  # run time does not depend on it
    with torch.inference_mode():
        codes = codec.encode(audio, codec.max_streams)
    streams = sorted({1, codec.max_streams})
    variants = [("onnxruntime fp32", False)]
    if description.get("int8"):
        variants.append(("onnxruntime int8", True))
    cpu = torch.device("cpu")
    rows = []
    previous = torch.get_num_threads()
    try:
        for threads in THREADS:
            torch.set_num_threads(threads)
            for k in streams:
                kbps = codec.bitrate(k) / 1000

                def encode(k=k):
                    with torch.inference_mode():
                        return codec.encode(audio, k)

                def decode(k=k):
                    with torch.inference_mode():
                        return codec.decode(codes[:, :k], length)

                for op, fn in (("encode", encode), ("decode", decode)):
                    timing = time_calls(fn, repeats, warmup, cpu)
                    rows.append(_row("escx eager", threads, op, kbps, seconds, timing))
            for engine, int8 in variants:
                onnx = OnnxCodec(folder, threads=threads, int8=int8)
                for op, k, timing in _time_onnx(onnx, audio.numpy(), codes.numpy(), streams,
                                                repeats, warmup):  # fmt: skip
                    rows.append(_row(engine, threads, op, codec.bitrate(k) / 1000, seconds, timing))
                log.warning("%s, %d thread(s): timed", engine, threads)
    finally:
        torch.set_num_threads(previous)
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.suffix == ".onnx"}
    checkpoint = handle.path.stat().st_size if handle.path and handle.path.is_file() else None
    return {
        "seconds": seconds, "repeats": repeats, "warmup": warmup, "export": str(folder),
        "model": str(handle.path) if handle.path else None, "rows": rows,
        "sizes": {"checkpoint": checkpoint, **files},
        "onnxruntime": _version("onnxruntime"), "torch": torch.__version__,
    }  # fmt: skip


def _time_onnx(onnx, audio, codes, streams: list[int], repeats: int, warmup: int):
    """(op, streams, Timing) of the exported encoder and decoder at each stream count."""
    cpu, length = torch.device("cpu"), audio.shape[-1]
    for k in streams:
        yield "encode", k, time_calls(lambda: onnx.encode(audio), repeats, warmup, cpu)
        decode = lambda k=k: onnx.decode(codes[:, :k], length)  # noqa: E731
        yield "decode", k, time_calls(decode, repeats, warmup, cpu)


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def onnx_markdown(result: dict[str, Any]) -> str:
    """The result as Markdown: times, escx / ONNX Runtime ratios, file sizes."""
    rows = result["rows"]
    eager = {
        (r["threads"], r["op"], r["kbps"]): r["median_s"]
        for r in rows
        if r["engine"] == "escx eager"
    }
    lines = [
        f"## ONNX Runtime against escx eager ({result['seconds']:g} s of audio, median of "
        f"{result['repeats']})",
        "",
        "| engine | threads | op | kbps | median s | real-time factor | escx eager / this |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = eager.get((r["threads"], r["op"], r["kbps"]))
        ratio = f"{base / r['median_s']:.2f}x" if base else "n/a"
        lines.append(
            f"| {r['engine']} | {r['threads']} | {r['op']} | {r['kbps']:g} | {r['median_s']:.3f} "
            f"| {r['rtf']:.3f} | {ratio} |"
        )
    lines += ["", "| file | MiB |", "|---|---|"]
    for name, size in result["sizes"].items():
        if size is not None:
            lines.append(f"| {name} | {size / 2**20:.2f} |")
    return "\n".join(lines)


def bench_onnx(
    model: str | None,
    configs: list[str] | None,
    export: str,
    seconds: float,
    repeats: int,
    warmup: int,
    out: Path,
) -> str:
    """``escx bench --onnx [DIR]``: benchmark, write ``onnx.json`` / ``onnx.md`` into ``out``.

    Args:
        model: the checkpoint benchmarked, or None for ``configs`` (random weights, seed 0).
        configs: model configs when there is no checkpoint.
        export: the export folder of that model, or "" to export it now into a scratch folder
            (with int8; a few minutes).
        seconds, repeats, warmup: as the rest of the benchmark.
        out: the report folder.

    Returns:
        The Markdown report.
    """
    from escx.api import CodecHandle, load_codec

    if model:
        handle = load_codec(model)
    else:
        from escx.config import build_codec
        from escx.experiments.recipes import config_path

        torch.manual_seed(0)
        handle = CodecHandle(
            build_codec(*(config_path(c) for c in configs or ["experiments/esc.yaml"]))
        )
    if export:
        result = run_onnx_bench(handle, Path(export), seconds, repeats, warmup)
    else:
        from escx.export.writer import export_codec

        name = handle.path.name if handle.path else None
        with tempfile.TemporaryDirectory(prefix="escx-bench-onnx-") as scratch:
            log.warning("exporting the benchmarked codec (fp32 and int8) ...")
            folder = export_codec(
                handle.codec, Path(scratch) / "export", handle.fingerprint, name, int8=True
            ).folder
            result = run_onnx_bench(handle, folder, seconds, repeats, warmup)
    text = onnx_markdown(result)
    write_report(out, "onnx", result, text)
    return text
