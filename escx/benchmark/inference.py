"""Inference benchmark: encode and decode 10 s with ESC-Base, per variant and bitrate.

A variant is a way of running the same model: the straightforward path (plain PyTorch, what a
transcription of the reference implementation does), escx's fast path, bf16, ``torch.compile``.
Work is counted once, as the FLOPs of the straightforward fp32 path (docs/esc.md §12.1 counts the
reference the same way), so GFLOP/s compare like with like: a variant that skips work gets no
credit in FLOPs, only in time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from escx import kernels
from escx.benchmark.measure import PeakMemory, count_flops, time_calls
from escx.codecs.base import Codec
from escx.perf import straightforward

log = logging.getLogger(__name__)

# (operation, streams): 9 and 1.5 kbps for ESC. ``ALL`` stands for the codec's every stream.
ALL = 0
OPERATIONS = (("encode", ALL), ("decode", ALL), ("encode", 1), ("decode", 1))


def operations(codec: Codec, ops: tuple[tuple[str, int], ...] = OPERATIONS):
    """``ops`` with ``ALL`` replaced by the codec's stream count."""
    return tuple((op, codec.max_streams if s == ALL else s) for op, s in ops)


@dataclass(frozen=True)
class Variant:
    """One way of running the codec.

    Attributes:
        name: label in the report.
        precision: "fp32" or "bf16" (the codec's inference precision).
        path: "straightforward", "fast" (escx's default), "fast-torch-ops" (the fast path with
            :mod:`escx.kernels` switched off: their share) or "compile" (``torch.compile`` of the
            straightforward model's encode and decode: inductor does its own fusion, and the fast
            path's per-head loops would only lengthen compilation).
        operations: (op, streams) pairs timed (``ALL``: every stream); compiled variants time
            the top-bitrate round trip only (each compiles for minutes on 2 cores).
    """

    name: str
    precision: str
    path: str
    operations: tuple[tuple[str, int], ...] = OPERATIONS


def _runner(codec: Codec, variant: Variant, op: str, streams: int, audio: Tensor, codes: Tensor,
            inference: bool = True):  # fmt: skip
    length = audio.shape[-1]
    if op == "encode":
        fn: Callable[..., Tensor] = codec.encode
        args: tuple = (audio, streams)
    else:
        fn = codec.decode
        args = (codes[:, :streams], length)
    if variant.path == "compile":
        fn = torch.compile(fn)

    def call() -> Tensor:
        if variant.path in ("straightforward", "compile"):
            context = straightforward()
        elif variant.path == "fast-torch-ops":
            context = kernels.switched_off()
        else:
            context = contextlib.nullcontext()
        grad = torch.inference_mode() if inference else torch.no_grad()
        with context, grad:
            return fn(*args)

    return call


def work_flops(codec: Codec, audio: Tensor, codes: Tensor) -> dict[tuple[str, int], int]:
    """FLOPs of every operation on the straightforward fp32 path."""
    codec.set_inference_precision("fp32")
    flops = {}
    work = Variant("work", "fp32", "straightforward")
    for op, streams in operations(codec):
        # no_grad, not inference mode: torch's FLOP counter fails on parametrized (weight-norm)
        # modules inside inference mode; the count is the same.
        call = _runner(codec, work, op, streams, audio, codes, inference=False)
        flops[(op, streams)] = count_flops(call)
    return flops


def run_variant(
    codec: Codec,
    variant: Variant,
    audio: Tensor,
    codes: Tensor,
    flops: dict[tuple[str, int], int],
    peaks: dict[str, float],
    repeats: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """Time every operation of one variant; one row per operation."""
    device = audio.device
    codec.set_inference_precision(variant.precision)
    seconds = audio.shape[-1] / codec.sample_rate
    rows = []
    for op, streams in operations(codec, variant.operations):
        call = _runner(codec, variant, op, streams, audio, codes)
        first = time_calls(call, 1, 0, device).median  # includes compilation for "compile"
        with PeakMemory(device) as memory:
            timing = time_calls(call, repeats, max(0, warmup - 1), device)
        gflop = flops[(op, streams)] / 1e9
        rows.append({
            "variant": variant.name, "precision": variant.precision, "path": variant.path,
            "op": op, "kbps": codec.bitrate(streams) / 1000, **timing.as_dict(),
            "first_call_s": first, "rtf": timing.median / seconds, "gflop": gflop,
            "gflops": gflop / timing.median,
            "peak_fraction": gflop / timing.median / peaks[variant.precision],
            "peak_memory_mb": None if memory.peak_bytes is None else memory.peak_bytes / 2**20,
        })  # fmt: skip
        log.info("%s %s %g kbps: %.3f s", variant.name, op, rows[-1]["kbps"], timing.median)
    codec.set_inference_precision("fp32")
    return rows


def code_agreement(codec: Codec, variant: Variant, audio: Tensor, reference: Tensor) -> float:
    """Fraction of 9 kbps codes equal to the straightforward fp32 path's."""
    codec.set_inference_precision(variant.precision)
    codes = _runner(codec, variant, "encode", codec.max_streams, audio, reference)()
    codec.set_inference_precision("fp32")
    return float((codes == reference).float().mean())
