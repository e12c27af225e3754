"""escx's CodecModule trains step for step like the reference ESC trainer.

``tests/fixtures/reference_training/training.pt`` holds a tiny reference ESC (CS-RVQ + Swin), six
batches of speech, the stream count of every step, and what the reference trainer computed over
six steps, three of them pre-training (its README says how it was made). The same
weights, converted to escx, trained by CodecModule under a Lightning Trainer on the same batches
and stream counts must give the same per-step loss terms and the same final weights.

The clips are cut to 8 x 320 - 80 samples, as the reference's data loader cuts them, which is the
length at which the reference's output is as long as its input, and they end in silence, so
escx's zero padding to a whole code frame leaves the spectrum unchanged. The run covers the
optimizer renewal one batch after the switch and gradients of unused streams (zero, not none);
reverting either makes this test fail.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from test_convert import reference_state
from torch import Tensor

from escx.convert import convert_reference_state_dict
from escx.training.module import CodecModule
from escx.training.schedule import PhaseSchedule

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reference_training" / "training.pt"
TERMS = ("stft", "mel", "commit", "codebook")
# Measured on this fixture: the terms agree to 8e-6 (relative) at every step; reverting the
# optimizer-renewal batch moves the commitment loss of steps 4-5 by 1.4e-3, giving unused streams
# no gradient moves it by 3e-3.
RTOL, ATOL = 1e-4, 1e-7
# Final weights, as |escx - reference| / |reference - initial| over all weights: 0.006 measured;
# 0.29 with the renewal reverted, 0.15 with no gradient for unused streams. (Element-wise it is
# no use: AdamW's first steps move a weight by about lr whatever the size of its gradient, so a
# gradient at float-noise level can flip one weight's step.)
UPDATE_RTOL = 0.03


class FixedStreams:
    """Quantizer dropout replaced by the fixture's stream count for each batch."""

    def __init__(self, streams: list[int]) -> None:
        self.streams = streams

    def draw(self, batch_index: int) -> int:
        return self.streams[batch_index]


@pytest.fixture(scope="module")
def fixture() -> dict:
    return torch.load(FIXTURE, map_location="cpu", weights_only=True)


def _codec(fixture: dict, which: str):
    state = reference_state({"state": fixture[which], "config": fixture["config"]})
    codec, _ = convert_reference_state_dict(state, fixture["config"])
    return codec


@pytest.fixture(scope="module")
def trained(fixture: dict) -> tuple[CodecModule, list[dict[str, float]]]:
    """CodecModule trained on the fixture's batches; returns it and the per-step terms."""
    torch.manual_seed(0)
    module = CodecModule(
        codec=_codec(fixture, "initial_state").train(),
        pretrain_steps=fixture["pretrain_steps"],
        val_kbps=(),
        audio_examples=0,
    )
    module.dropout = FixedStreams(fixture["streams"])
    steps: list[dict[str, float]] = []
    generator_terms = module.objective.generator_terms

    def recording(*args, **kwargs) -> dict[str, Tensor]:
        terms = generator_terms(*args, **kwargs)
        steps.append({k: float(v.detach()) for k, v in terms.items()})
        return terms

    module.objective.generator_terms = recording
    batches = list(fixture["batches"])
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=len(batches),
        max_epochs=1,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return module, steps


def test_optimizer_is_renewed_on_the_second_quantized_batch() -> None:
    schedule = PhaseSchedule(pretrain_steps=3)
    assert [schedule.renews_optimizer(n) for n in range(6)] == [False] * 4 + [True, False]
    assert not any(PhaseSchedule(pretrain_steps=0).renews_optimizer(n) for n in range(3))


def test_fixture_is_small() -> None:
    assert FIXTURE.stat().st_size < 300_000


def test_loss_terms_match_reference_every_step(fixture: dict, trained) -> None:
    _, steps = trained
    reference = fixture["terms"]
    assert len(steps) == reference.shape[0] == len(fixture["streams"])
    for i, step in enumerate(steps):
        got = torch.tensor([step[name] for name in TERMS])
        torch.testing.assert_close(
            got,
            reference[i, : len(TERMS)],
            rtol=RTOL,
            atol=ATOL,
            msg=lambda m, i=i: f"step {i}: {m}",
        )


def test_final_weights_match_reference(fixture: dict, trained) -> None:
    module, _ = trained
    initial = _codec(fixture, "initial_state").state_dict()
    expected = _codec(fixture, "final_state").state_dict()
    got = module.codec.state_dict()
    assert got.keys() == expected.keys()
    keys = [k for k, v in expected.items() if v.is_floating_point()]
    error = torch.cat([(got[k] - expected[k]).flatten() for k in keys]).norm()
    update = torch.cat([(expected[k] - initial[k]).flatten() for k in keys]).norm()
    assert update > 0
    relative = (error / update).item()
    assert relative < UPDATE_RTOL, f"final weights off by {relative:.3f} of the reference's update"
