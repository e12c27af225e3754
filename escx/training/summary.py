"""Writes a run's final metrics to ``<default_root_dir>/metrics.json``.

Sweeps and ablation reports read it instead of parsing logger files, so they work the same with
W&B, CSV or TensorBoard logging.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from escx.atomic import atomic_path

SUMMARY_FILE = "metrics.json"


class MetricsSummary(Callback):
    """Saves the last logged value of every metric, the best checkpoint score and progress."""

    @rank_zero_only
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        path = Path(trainer.default_root_dir) / SUMMARY_FILE
        previous = json.loads(path.read_text()) if path.is_file() else {}
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if getattr(v, "numel", lambda: 1)() == 1
        }
        summary = {**previous, **{k: (None if math.isnan(v) else v) for k, v in metrics.items()}}
        summary["batches_seen"] = getattr(pl_module, "batches_seen", None)
        summary["global_step"] = trainer.global_step
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.best_model_score is not None:
                summary[f"best/{callback.monitor}"] = float(callback.best_model_score)
                summary["best_checkpoint"] = callback.best_model_path
            if isinstance(callback, ModelCheckpoint) and callback.last_model_path:
                summary["last_checkpoint"] = callback.last_model_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "fit")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer, pl_module, "test")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._write(trainer, pl_module, "validate")
