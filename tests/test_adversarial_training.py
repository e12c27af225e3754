"""Adversarial training (ESC-Base(adv)): phases, the two-optimizer path, DDP and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from training_helpers import ESC, REPO, TINY, TINY_ADV, build_module, write_corpus

from escx.data.datamodule import AudioDataModule
from escx.training.schedule import Phase


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adv_corpus")
    return write_corpus(root / "train", 8, 0.6, seed=3), write_corpus(root / "val", 2, 0.5, seed=4)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


class PhaseProbe(L.Callback):
    """Records the phase, optimizer-step count and discriminator weights after every batch."""

    def __init__(self) -> None:
        self.phases: list[str] = []
        self.global_steps: list[int] = []
        self.disc: list[dict[str, torch.Tensor]] = []
        self.codec: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.disc.append(_params(pl_module.discriminator))
        self.codec.append(_params(pl_module.codec))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.phases.append(pl_module.phase.value)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.global_steps.append(trainer.global_step)
        self.disc.append(_params(pl_module.discriminator))
        self.codec.append(_params(pl_module.codec))


def test_each_phase_steps_and_discriminator_waits_for_quantized_training(corpus, tmp_path):
    train, _ = corpus
    L.seed_everything(0)
    module = build_module(ESC, TINY, TINY_ADV, pretrain_steps=2, val_kbps=[9.0])
    probe = PhaseProbe()
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_epochs=1, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, limit_val_batches=0, callbacks=[probe],
    )  # fmt: skip
    data = AudioDataModule(train=str(train), val=None, batch_size=2, segment_samples=6400)
    trainer.fit(module, data)

    assert probe.phases == ["pretrain", "pretrain", "adversarial", "adversarial"]
    # The schedule counts batches; global_step counts optimizer steps (2 per adversarial batch).
    assert module.batches_seen == 4
    assert probe.global_steps == [1, 2, 4, 6]
    first = probe.disc[0]
    for snapshot in probe.disc[1:3]:  # after each pre-training batch: untouched
        assert all(torch.equal(snapshot[k], first[k]) for k in first)
    changed = [k for k in first if not torch.equal(probe.disc[3][k], first[k])]
    assert changed, "the discriminator must train in the adversarial phase"
    for before, after in zip(probe.codec[:-1], probe.codec[1:], strict=True):
        assert any(not torch.equal(before[k], after[k]) for k in before)  # codec trains each batch


def test_discriminator_losses_are_logged_and_weights_map_to_terms(corpus, tmp_path):
    train, _ = corpus
    module = build_module(ESC, TINY, TINY_ADV, pretrain_steps=0, val_kbps=[9.0])
    assert module.phase is Phase.ADVERSARIAL
    assert "stft" not in module.objective.weights  # weight 0: not computed at all
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=2, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(
        module, AudioDataModule(train=str(train), val=None, batch_size=2, segment_samples=6400)
    )
    logged = trainer.callback_metrics
    for name in ("discriminator", "adversarial", "feature_matching", "mel", "commit"):
        assert torch.isfinite(logged[f"train/loss/{name}"]), name
    assert "train/loss/stft" not in logged


def _ddp(args: list[str], root: Path, probe: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ESCX_PROBE_DIR": str(probe),
        "WANDB_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
        "ESCX_TRUSTED_MODULES": "training_helpers",  # configs may name only trusted classes
    }
    cmd = [
        sys.executable, "-m", "escx.cli", "fit",
        "--config", str(ESC), "--config", str(TINY), "--config", str(TINY_ADV),
        "--trainer.default_root_dir", str(root), "--trainer.accelerator", "cpu",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.logger", "false",
        "--trainer.callbacks+=training_helpers.RankDump", *args,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ddp_two_optimizers_and_resume_keep_ranks_identical(corpus, tmp_path):
    train, val = corpus
    data = ["--data.train", str(train), "--data.val", str(val)]
    root = tmp_path / "run"
    # 2 pre-training batches (1 optimizer step each) + 1 adversarial batch (2 steps) = 4 steps.
    first = _ddp([*data, "--trainer.max_steps", "4"], root, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["escx"]["batches_seen"] == 3 and ckpt["escx"]["phase"] == "adversarial"
    assert len(ckpt["optimizer_states"]) == 2

    resumed = _ddp([*data, "--trainer.max_steps", "8", "--ckpt_path", "last"], root, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["escx"]["batches_seen"] == 5
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert any(k.startswith("discriminator.") for k in states[0])
    for name in states[0]:  # codec and discriminator weights identical on both ranks
        assert torch.equal(states[0][name], states[1][name]), name
    probes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert probes[0]["streams"] == probes[1]["streams"]
