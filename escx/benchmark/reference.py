"""DAC beside ESC in ``escx bench``: the 16 kHz DAC with 12 and 18 codebooks (random weights; run
time does not depend on them), coded on the same audio, device and threads as the benchmarked
codec, so the paper's parameter and speed ratios (docs/esc.md §12, §18) come from one run.

DAC has no fast path in escx: it runs as plain PyTorch (fp32, eager; weight norm computed once
per call), which is how its own implementation runs.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from escx.benchmark.measure import PeakMemory, count_flops, time_calls
from escx.codecs.base import Codec
from escx.codecs.waveform import DAC
from escx.quantizers.factorized import FactorizedRVQ

log = logging.getLogger(__name__)

# (label, codebooks): DAC's released 16 kHz model (6 kbps) and the 18-codebook 9 kbps one that
# the ESC paper compares with (experiments/dac.yaml, experiments/dac-9kbps.yaml).
REFERENCES = (("DAC 16 kHz, 12 codebooks", 12), ("DAC 16 kHz, 18 codebooks", 18))


def parameter_count(codec: Codec) -> int:
    """Every parameter, weight-norm gains included."""
    return sum(p.numel() for p in codec.parameters())


def _rows(name: str, codec: Codec, audio: Tensor, repeats: int, warmup: int,
          peak: float) -> list[dict[str, Any]]:  # fmt: skip
    streams, length = codec.max_streams, audio.shape[-1]
    with torch.inference_mode():
        codes = codec.encode(audio, streams)
    calls = {
        "encode": lambda: codec.encode(audio, streams),
        "decode": lambda: codec.decode(codes, length),
    }
    rows = []
    for op, call in calls.items():
        # FLOPs under no_grad: torch's FLOP counter fails on parametrized (weight-norm) modules
        # inside inference mode.
        with torch.no_grad():
            gflop = count_flops(call) / 1e9

        def timed(call=call) -> Tensor:
            with torch.inference_mode():
                return call()

        with PeakMemory(audio.device) as memory:
            timing = time_calls(timed, repeats, warmup, audio.device)
        seconds = length / codec.sample_rate
        rows.append({
            "model": name, "parameters": parameter_count(codec), "op": op,
            "kbps": codec.bitrate(streams) / 1000, **timing.as_dict(),
            "rtf": timing.median / seconds, "gflop": gflop, "gflops": gflop / timing.median,
            "peak_fraction": gflop / timing.median / peak,
            "peak_memory_mb": None if memory.peak_bytes is None else memory.peak_bytes / 2**20,
        })  # fmt: skip
        log.info("%s %s: %.3f s", name, op, timing.median)
    return rows


def run_references(audio: Tensor, repeats: int, warmup: int, fp32_peak: float) -> list[dict]:
    """Encode and decode ``audio`` (1, L) with every reference codec at all its streams.

    Returns:
        One row per codec and operation: parameters, median/min/max seconds, real-time factor,
        GFLOP (matmuls and convolutions), GFLOP/s and its share of the fp32 matmul peak.
    """
    rows: list[dict[str, Any]] = []
    for name, codebooks in REFERENCES:
        log.warning("reference codec: %s", name)
        torch.manual_seed(0)
        codec = DAC(quantizer=FactorizedRVQ(n_streams=codebooks)).to(audio.device).eval()
        rows += _rows(name, codec, audio, repeats, warmup, fp32_peak)
        del codec  # 300 MB of weights: one reference model in memory at a time
    return rows
