"""Shared helpers for the training tests: tiny audio corpora and a probe callback."""

from __future__ import annotations

import csv
import json
import os
import socket
from pathlib import Path

import lightning as L
import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny-test.yaml"
ESC = REPO / "experiments" / "esc.yaml"


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of an ``escx`` subprocess in the training tests: W&B off, unbuffered output,
    this folder importable and ``training_helpers`` trusted (configs may name its classes),
    no SLURM variables but those a test sets in ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update({"WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env["ESCX_TRUSTED_MODULES"] = "training_helpers"
    env.update(extra)
    return env


def write_corpus(folder: Path, n_files: int, seconds: float, seed: int) -> Path:
    """Harmonic tones with vibrato and noise bursts: deterministic, speech-band audio."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    for i in range(n_files):
        f0 = rng.uniform(90, 220) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        audio = sum(np.sin(k * phase) / k for k in range(1, 8))
        audio *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 4) * t) ** 2
        audio += 0.02 * rng.standard_normal(t.shape)
        sf.write(folder / f"clip{i:02d}.wav", (0.2 * audio).astype(np.float32), rate)
    return folder


class RankDump(L.Callback):
    """Writes each rank's weights (codec and discriminators), drawn stream counts and final
    metrics to $ESCX_PROBE_DIR."""

    def __init__(self) -> None:
        self.streams: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.streams.append(float(trainer.callback_metrics["train/streams"]))

    def on_train_end(self, trainer, pl_module) -> None:
        out = Path(os.environ["ESCX_PROBE_DIR"])
        rank = trainer.global_rank
        torch.save(pl_module.state_dict(), out / f"rank{rank}.pt")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        (out / f"rank{rank}.json").write_text(
            json.dumps({"streams": self.streams, "metrics": metrics, "world": trainer.world_size})
        )


TINY_ADV = REPO / "tests" / "configs" / "tiny-adv-test.yaml"


def build_module(*configs: Path, **overrides):
    """A CodecModule from stacked experiment YAMLs (their ``model`` sections), as the CLI does."""
    import yaml
    from jsonargparse import ArgumentParser

    from escx.config import registries
    from escx.training.module import CodecModule

    registries()
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(CodecModule, "model")
    namespace = None
    for path in configs:
        section = yaml.safe_load(Path(path).read_text()).get("model", {})
        namespace = parser.parse_object({"model": section}, namespace=namespace)
    for key, value in overrides.items():
        namespace[f"model.{key}"] = value
    return parser.instantiate(namespace).model


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, for a gloo process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def logged_losses(folder: Path) -> dict[int, float]:
    """train/loss/stft per step, over every CSV log version a run folder holds (a resumed run
    writes a new version)."""
    losses: dict[int, float] = {}
    for file in sorted(folder.glob("logs/version_*/metrics.csv")):
        with open(file) as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss/stft"):
                    losses[int(row["step"])] = float(row["train/loss/stft"])
    return losses
