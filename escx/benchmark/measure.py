"""Measuring primitives: medians after warm-up, peak memory, FLOP counts, matmul peak."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Timing:
    """Wall-clock seconds of repeated calls.

    Attributes:
        times: every timed call, in order (warm-up calls excluded).
    """

    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    def as_dict(self) -> dict[str, float]:
        return {"median_s": self.median, "min_s": min(self.times), "max_s": max(self.times)}


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` timed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    timing = Timing()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        timing.times.append(time.perf_counter() - start)
    return timing


class PeakMemory:
    """Peak memory of the code inside the ``with`` block, in bytes.

    CUDA: ``torch.cuda.max_memory_allocated`` (tensors only). CPU: the process's peak resident set
    (``VmHWM``), reset on entry through ``/proc/self/clear_refs`` (Linux); elsewhere None.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_cpu_peak()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.peak_bytes = _cpu_peak()


def _reset_cpu_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _cpu_peak() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def count_flops(fn: Callable[[], object]) -> int:
    """Matmul and convolution FLOPs of one call (1 multiply-add = 2 FLOPs), as docs/esc.md §12.1."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def matmul_peak(
    device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 7
) -> float:
    """This machine's matrix-multiply throughput in GFLOP/s: median of ``size``^3 products."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    with torch.inference_mode():
        timing = time_calls(lambda: a @ b, repeats, 2, device)
    return 2 * size**3 / timing.median / 1e9
