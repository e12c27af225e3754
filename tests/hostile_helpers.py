"""Files for the hostile-input tests: a module that must never be imported, checkpoints and
configs that try to make escx import it or build too much, and a Ctrl-C before the first step."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import lightning as L
import torch

# Importing this writes MARKER beside it; it re-exports an escx class under its own name.
EVIL_MODULE = """
import pathlib
pathlib.Path(__file__).with_name("MARKER").write_text("evil_mod was imported")
from escx.codecs.stft_codec import STFTCodec
from escx.quantizers.cross_scale import CrossScaleRVQ
class Foo:
    pass
def make(*args, **kwargs):
    return None
"""

# Nine levels of nine aliases: 387 million values once expanded.
ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n"
        for a, b in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "model: {val_kbps: *i}\n"
)


def shared_list_bomb(levels: int = 8) -> list:
    """A list whose pickle is small but which holds 10**levels values once expanded."""
    node: list = [0] * 10
    for _ in range(levels):
        node = [node] * 10
    return node


def training_checkpoint(module: L.LightningModule, run_id: str, step: int) -> dict:
    """A Lightning training checkpoint of ``module`` as escx fit writes one (no optimizer moments:
    the refusals under test happen before Lightning restores anything)."""
    return {
        "epoch": 0,
        "global_step": step,
        "pytorch-lightning_version": L.__version__,
        "state_dict": {k: v.clone() for k, v in module.state_dict().items()},
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"pretrain_steps": 2, "val_kbps": [1.5, 9.0]},
        "escx": {"batches_seen": step, "phase": "quantized"},
        "escx_run": {"run_id": run_id},
    }


def save(blob: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    return path


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: size, modification time (ns) and SHA-256."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


class InterruptBeforeTraining(L.Callback):
    """Presses Ctrl-C (SIGINT to its own process) while the run is set up, before step 1."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # A process started in the background by a non-interactive shell (as CI may start the
        # suite) inherits SIGINT ignored; a terminal's foreground process has Python's handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the KeyboardInterrupt is raised here
