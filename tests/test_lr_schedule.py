"""WarmupCosineLR: the shape of the schedule, its default length and its state round trip."""

from __future__ import annotations

import pytest
import torch

from escx.training.lr_schedule import WarmupCosineLR


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _rates(scheduler: WarmupCosineLR, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_warmup_then_cosine_to_final_ratio() -> None:
    scheduler = WarmupCosineLR(_optimizer(2.0), warmup_steps=4, total_steps=12, final_ratio=0.1)
    rates = _rates(scheduler, 14)
    assert rates[:4] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert rates[4] == pytest.approx(2.0)  # decay starts from the peak
    assert all(a >= b for a, b in zip(rates[4:], rates[5:], strict=False))
    assert rates[8] == pytest.approx(0.1 * 2 + 0.9 * 2 * 0.5)  # half way: mean of peak and end
    assert rates[12:] == pytest.approx([0.2, 0.2])  # stays at the end value past total_steps


def test_length_defaults_to_max_steps() -> None:
    scheduler = WarmupCosineLR(_optimizer(), warmup_steps=0)
    scheduler.bind_total_steps(10)
    assert scheduler.total_steps == 10
    given = WarmupCosineLR(_optimizer(), total_steps=5)
    given.bind_total_steps(10)
    assert given.total_steps == 5
    with pytest.raises(ValueError, match="max_steps"):
        WarmupCosineLR(_optimizer()).bind_total_steps(-1)


def test_bad_arguments_and_state_round_trip() -> None:
    with pytest.raises(ValueError, match="final_ratio"):
        WarmupCosineLR(_optimizer(), final_ratio=2.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosineLR(_optimizer(), warmup_steps=-1)
    first = WarmupCosineLR(_optimizer(), warmup_steps=3, total_steps=20)
    _rates(first, 7)
    second = WarmupCosineLR(_optimizer(), warmup_steps=3, total_steps=20)
    # As a checkpoint restores them: the optimizer (which holds the current rate), then the
    # scheduler; the state holds plain numbers only, so weights_only loading accepts it.
    second.optimizer.load_state_dict(first.optimizer.state_dict())
    second.load_state_dict(first.state_dict())
    assert all(isinstance(v, (int, float, list, type(None))) for v in first.state_dict().values())
    assert _rates(second, 5) == pytest.approx(_rates(first, 5))
