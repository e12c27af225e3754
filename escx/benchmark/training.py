"""Training-step benchmark: one ESC-Base step, forward + backward + optimizer, per variant.

The step is ESC's recipe (docs/esc.md §13.2, §13.5): all six streams active, STFT + mel +
commitment + codebook losses with ESC-Base's weights, AdamW at 1e-4, gradient clipping at 0.5. A
codec without an STFT (DAC) gets DAC's non-adversarial terms instead (mel 15, commitment 0.25,
codebook 1).
Every variant starts from the same weights and batch, so the loss of its first step must equal the
straightforward step's (compared in the report).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from escx.benchmark.measure import PeakMemory, time_calls
from escx.codecs.base import Codec
from escx.perf import straightforward
from escx.training.objective import ESC_LOSS_WEIGHTS, Objective

# DAC's weights without its discriminators (experiments/dac.yaml), for codecs without an STFT.
WAVEFORM_LOSS_WEIGHTS = {"mel": 15.0, "commit": 0.25, "codebook": 1.0}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepVariant:
    """One way of running the step.

    Attributes:
        name: label in the report.
        precision: "fp32" or "bf16" (autocast, as Lightning's ``bf16-mixed``).
        path: "straightforward", "escx" or "compile" (``torch.compile`` of forward + losses).
    """

    name: str
    precision: str
    path: str


class TrainStep:
    """A fresh copy of ``codec`` with its objective and optimizer, for one variant."""

    def __init__(self, codec: Codec, audio: Tensor, variant: StepVariant) -> None:
        self.codec = copy.deepcopy(codec).train()
        self.audio, self.variant = audio, variant
        self.weights = ESC_LOSS_WEIGHTS if codec.spectrum_output else WAVEFORM_LOSS_WEIGHTS
        self.objective = Objective(self.weights, sample_rate=codec.sample_rate)
        self.optimizer = torch.optim.AdamW(self.codec.parameters(), lr=1e-4)
        self.forward = self._loss
        if variant.path == "compile":
            self.forward = torch.compile(self._loss)

    def _loss(self, audio: Tensor) -> Tensor:
        out = self.codec(audio, self.codec.max_streams)
        terms = self.objective.generator_terms(audio, out)
        return sum(self.weights[name] * value for name, value in terms.items())

    def __call__(self) -> float:
        device = self.audio.device
        dtype = torch.bfloat16 if self.variant.precision == "bf16" else None
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        path = (
            straightforward()
            if self.variant.path == "straightforward"
            else contextlib.nullcontext()
        )
        with path:
            with autocast:
                loss = self.forward(self.audio)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.codec.parameters(), 0.5)
            self.optimizer.step()
        return float(loss.detach())


def run_step_variant(
    codec: Codec, audio: Tensor, variant: StepVariant, repeats: int, warmup: int
) -> dict[str, Any]:
    """Loss of the first step from the shared initial state, then the median step time."""
    step = TrainStep(codec, audio, variant)
    torch.manual_seed(0)
    first_loss = step()  # also the warm-up (and compilation) call
    with PeakMemory(audio.device) as memory:
        timing = time_calls(step, repeats, max(0, warmup - 1), audio.device)
    batch, length = audio.shape
    log.info("train step %s: %.3f s", variant.name, timing.median)
    return {
        "variant": variant.name, "precision": variant.precision, "path": variant.path,
        "batch": batch, "seconds_per_clip": length / codec.sample_rate, **timing.as_dict(),
        "clips_per_s": batch / timing.median, "first_loss": first_loss,
        "peak_memory_mb": None if memory.peak_bytes is None else memory.peak_bytes / 2**20,
    }  # fmt: skip
