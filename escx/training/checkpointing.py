"""Checkpointing: last + best by validation PESQ at 9 kbps, and a resumable one on interrupt.

:class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the target folder,
flushes it to disk and renames it over the target, so an interrupted write never replaces the
last good checkpoint (Lightning's own writer stages the file in the system temp folder and moves
it, which is a non-atomic copy when that folder is on another file system). The callback adds:

* a stable default folder, ``<default_root_dir>/checkpoints``, so ``--ckpt_path last`` finds the
  previous run's ``last.ckpt`` (the default folder of a logger changes with every run);
* on Ctrl-C, SIGTERM or any error, the current state is written to ``last.ckpt`` so the run can be
  resumed exactly where it stopped.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves checkpoints via a same-folder temporary file + fsync + ``os.replace``."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        from escx.checkpoint import atomic_torch_save

        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        atomic_torch_save(checkpoint, path)


class EscxCheckpoint(ModelCheckpoint):
    """ModelCheckpoint with a stable folder and a resumable checkpoint on interruption.

    Args:
        dirpath: folder (default ``<trainer.default_root_dir>/checkpoints``).
        monitor: metric of the best checkpoint (``val/pesq@9kbps``); None keeps only ``last``.
        mode: "max" or "min".
        save_on_exception: write ``last.ckpt`` when training is interrupted.
        **kwargs: other ModelCheckpoint arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str | None = "val/pesq@9kbps",
        mode: str = "max",
        save_on_exception: bool = True,
        filename: str | None = "best-{step}",
        save_last: bool = True,
        save_top_k: int = 1,
        every_n_train_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            monitor=monitor,
            mode=mode,
            filename=filename,
            save_last=save_last,
            save_top_k=save_top_k if monitor else 0,
            every_n_train_steps=every_n_train_steps,
            **kwargs,
        )
        self.save_on_exception = save_on_exception

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._training_started = False
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Without the monitored metric (no validation data, or other bitrates) keep `last` only.
        if self.monitor and self.monitor not in trainer.callback_metrics:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            return
        super().on_validation_end(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Only a run that got as far as training has a state worth saving on interruption: a
        # failure while restoring a checkpoint must never overwrite that checkpoint.
        self._training_started = True
        super().on_train_start(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run that stops between validations (max_steps) still leaves its final state.
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        started = getattr(self, "_training_started", False)
        if not (self.save_on_exception and started and trainer.state.fn == "fit" and self.dirpath):
            return
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        trainer.save_checkpoint(path)
        self.last_model_path = path
        log.warning(
            "training stopped (%s); resumable checkpoint written to %s "
            "(resume with --ckpt_path last)",
            type(exception).__name__,
            path,
        )
