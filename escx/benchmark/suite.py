"""``escx bench``: the whole benchmark, in an order that makes same-run ratios fair.

On the CPU the straightforward inference baseline runs first, with the C library's default
allocator; then :func:`escx.perf.tune_cpu_allocator` is applied (it cannot be undone cleanly)
and escx's inference variants run. Each training-step variant runs in a fresh process, so the
inference rows' peak memory is not the training step's, and the straightforward step keeps the
default allocator. DAC (12 and 18 codebooks, random weights) is coded after escx's inference
variants, with the same audio, threads and tuned allocator (``--no-dac`` skips it). With CUDA
present the same inference and training cases run on the GPU.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import platform
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from escx import kernels
from escx.benchmark.inference import Variant, code_agreement, run_variant, work_flops
from escx.benchmark.measure import matmul_peak
from escx.benchmark.quality import precision_quality
from escx.benchmark.reference import parameter_count, run_references
from escx.benchmark.training import StepVariant, run_step_variant
from escx.perf import tune_cpu_allocator

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    """What to run (see ``escx bench --help``)."""

    configs: list[str]
    model: str | None
    seconds: float
    repeats: int
    warmup: int
    threads: int
    compile: bool
    train: bool
    train_batch: int
    train_seconds: float
    train_repeats: int
    compile_train: bool
    quality_model: str | None
    quality_data: str | None
    quality_files: int
    devices: list[str]
    dac: bool = True


def _codec(options: BenchOptions):
    if options.model:
        from escx.api import load_codec

        return load_codec(options.model).codec
    from escx.config import build_codec

    torch.manual_seed(0)  # run time does not depend on the weights; fix them anyway
    return build_codec(*options.configs)


def _environment(options: BenchOptions) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__, "threads": options.threads, "cpu": cpu,
        "cores": os.cpu_count(), "model": options.model or " + ".join(options.configs),
        "seconds": options.seconds, "repeats": options.repeats, "warmup": options.warmup,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "native_kernels": kernels.unavailable_reason() or "on",
    }  # fmt: skip


def run_device(codec, device: torch.device, options: BenchOptions) -> dict[str, Any]:
    """Every case on one device."""
    codec = codec.to(device).eval()
    length = int(options.seconds * codec.sample_rate)
    generator = torch.Generator().manual_seed(0)
    # Noise: run time does not depend on the signal, and noise needs no data set.
    audio = (torch.randn(1, length, generator=generator) * 0.1).to(device)
    peaks = {
        "fp32": matmul_peak(device, torch.float32),
        "bf16": matmul_peak(device, torch.bfloat16),
    }
    log.warning("%s matmul peak: fp32 %.0f, bf16 %.0f GFLOP/s", device, *peaks.values())
    with torch.inference_mode():
        codec.set_inference_precision("fp32")
        from escx.perf import straightforward

        with straightforward():
            codes = codec.encode(audio, codec.max_streams)
    flops = work_flops(codec, audio, codes)
    rows: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    n = options.repeats, options.warmup
    cpu = device.type == "cpu"

    def infer(variant: Variant) -> None:
        log.warning("inference: %s", variant.name)
        rows.extend(run_variant(codec, variant, audio, codes, flops, peaks, *n))
        agreement[variant.name] = code_agreement(codec, variant, audio, codes)

    def train(variant: StepVariant) -> None:
        if options.train:
            log.warning("training step: %s", variant.name)
            steps.append(_train_in_fresh_process(options, device, variant))

    agreement: dict[str, float] = {}
    infer(Variant("straightforward fp32", "fp32", "straightforward"))
    if cpu:  # the allocator's share, before it is switched on for the rest of the process
        infer(Variant("escx fp32, default allocator", "fp32", "fast"))
        tuned = tune_cpu_allocator()
        log.warning("allocator tuned: %s", tuned)
    infer(Variant("escx fp32", "fp32", "fast"))
    infer(Variant("escx bf16", "bf16", "fast"))
    if cpu and kernels.unavailable_reason() is None:
        infer(Variant("escx fp32, PyTorch ops only", "fp32", "fast-torch-ops"))
        infer(Variant("escx bf16, PyTorch ops only", "bf16", "fast-torch-ops"))
    if options.compile:
        round_trip = (("encode", codec.max_streams), ("decode", codec.max_streams))
        infer(Variant("compiled fp32", "fp32", "compile", round_trip))
        infer(Variant("compiled bf16", "bf16", "compile", round_trip))
    train(StepVariant("straightforward fp32", "fp32", "straightforward"))
    train(StepVariant("escx fp32", "fp32", "escx"))
    train(StepVariant("escx bf16", "bf16", "escx"))
    if options.compile_train:
        train(StepVariant("compiled fp32", "fp32", "compile"))
        train(StepVariant("compiled bf16", "bf16", "compile"))
    references = []
    if options.dac:  # DAC beside the benchmarked codec: the paper's parameter and speed ratios
        references = run_references(audio, options.repeats, options.warmup, peaks["fp32"])
    quality = None
    if options.quality_data and options.quality_model:
        quality = precision_quality(options.quality_model, options.quality_data,
                                    options.quality_files,
                                    device)  # fmt: skip
    return {
        "device": str(device), "matmul_peak_gflops": peaks, "inference": rows,
        "code_agreement": agreement, "training": steps, "quality": quality,
        "parameters": parameter_count(codec), "top_kbps": codec.bitrate(codec.max_streams) / 1000,
        "references": references,
    }  # fmt: skip


def _train_in_fresh_process(
    options: BenchOptions, device: torch.device, variant: StepVariant
) -> dict[str, Any]:
    """One training-step variant in a new process: its peak memory is its own, and the
    straightforward baseline runs with the C library's default allocator, as a plain PyTorch
    program would, while escx's variants run with :func:`escx.perf.tune_cpu_allocator`."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_train_step_child, options, str(device), variant).result()


def _train_step_child(options: BenchOptions, device_name: str, variant: StepVariant) -> dict:
    torch.set_num_threads(options.threads)
    if variant.path != "straightforward":
        tune_cpu_allocator()
    device = torch.device(device_name)
    codec = _codec(options).to(device)  # the same seeded weights as the parent's
    generator = torch.Generator().manual_seed(1)
    samples = int(options.train_seconds * codec.sample_rate)
    clips = (torch.randn(options.train_batch, samples, generator=generator) * 0.1).to(device)
    return run_step_variant(codec, clips, variant, options.train_repeats, 1)


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run everything; returns the JSON-ready result."""
    torch.set_num_threads(options.threads)
    codec = _codec(options)
    result = {"environment": _environment(options), "results": []}
    for name in options.devices:
        result["results"].append(run_device(codec, torch.device(name), options))
    return result
