"""Checkpointing: last + best by validation PESQ at 9 kbps, and a resumable one on interrupt.

:class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the target folder,
flushes it to disk and renames it over the target, so an interrupted write never replaces the
last good checkpoint (Lightning's own writer stages the file in the system temp folder and moves
it, which is a non-atomic copy when that folder is on another file system). The callback adds:

* a stable default folder, ``<default_root_dir>/checkpoints``, so ``--ckpt_path last`` finds the
  previous run's ``last.ckpt`` (the default folder of a logger changes with every run), and one
  run per folder: files are overwritten in place, never versioned (``last-v1.ckpt`` beside a
  stale ``last.ckpt``), and a new run refuses to start in a folder that holds one;
* a run id and the W&B run id in every checkpoint (``escx_run``), so a resumed run continues the
  same W&B run and a checkpoint of another run is told apart from the folder's own
  (:mod:`escx.training.resume`); a run started from another run's checkpoint in an empty folder
  is a new run with a new id;
* on Ctrl-C or SIGTERM, training stops at the end of the current batch and writes ``last.ckpt``
  there (:mod:`escx.training.stopping`), so the run resumes exactly where it stopped; on any
  other error the current state is written to ``last.ckpt`` too;
* under SLURM, SIGUSR1 does the same and then requeues the job (:mod:`escx.training.slurm`);
  the SLURM job id is stored beside the run id, so the requeued job resumes by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from typing import Any

import lightning as L
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from escx.training.slurm import REQUEUE_SIGNAL, requeue, slurm_job_id
from escx.training.stopping import StopRequests, stop_exception

log = logging.getLogger(__name__)


class RunFolderInUse(ValueError):
    """A new run was started in a folder that holds another run's checkpoints."""


def run_folder_message(folder: str | os.PathLike) -> str:
    """The one-line error for a new run in a folder that already holds ``last.ckpt``."""
    return (
        f"{folder} already holds a run (last.ckpt); resume it with --ckpt_path last, or start "
        "the new run in another folder (--trainer.default_root_dir DIR)"
    )


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves checkpoints via a same-folder temporary file + fsync + ``os.replace``; loads them
    with ``weights_only=True`` only (a checkpoint never runs code when it is read)."""

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        from escx.checkpoint import safe_torch_load

        blob = safe_torch_load(path, "training checkpoint")
        if not isinstance(blob, dict):
            raise ValueError(f"{path} is not a Lightning training checkpoint (no dict inside)")
        return blob

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        from escx.checkpoint import atomic_torch_save

        os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
        atomic_torch_save(checkpoint, path)


# Stands for the highest validated bitrate in a monitored metric's name (``val/pesq@top``).
TOP_BITRATE = "@top"


class EscxCheckpoint(ModelCheckpoint):
    """ModelCheckpoint with a stable folder and a resumable checkpoint on interruption.

    Args:
        dirpath: folder (default ``<trainer.default_root_dir>/checkpoints``).
        monitor: metric of the best checkpoint; ``@top`` stands for the highest bitrate the run
            validates (``val/pesq@top`` is ``val/pesq@9kbps`` for ESC, ``val/pesq@6kbps`` for a
            12-codebook DAC). None keeps only ``last``.
        mode: "max" or "min".
        save_on_exception: write ``last.ckpt`` when training is interrupted.
        **kwargs: other ModelCheckpoint arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str | None = "val/pesq" + TOP_BITRATE,
        mode: str = "max",
        save_on_exception: bool = True,
        filename: str | None = "best-{step}",
        save_last: bool = True,
        save_top_k: int = 1,
        every_n_train_steps: int | None = None,
        enable_version_counter: bool = False,
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
            enable_version_counter=enable_version_counter,
            **kwargs,
        )
        self.save_on_exception = save_on_exception
        self._stops = StopRequests()
        self._run_id = uuid.uuid4().hex

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._training_started = False
        self._use_stable_folder(trainer)
        self._resolve_top_bitrate(pl_module)
        super().setup(trainer, pl_module, stage)

    def _resolve_top_bitrate(self, pl_module: L.LightningModule) -> None:
        """``...@top`` -> the label of the highest validated bitrate (before the state key is
        used: Lightning restores callback states after ``setup``)."""
        if not (self.monitor and self.monitor.endswith(TOP_BITRATE)):
            return
        top = getattr(getattr(pl_module, "val_metrics", None), "top", None)
        if top is None:  # nothing is validated: keep `last` only
            self.monitor, self.save_top_k = None, 0
            return
        self.monitor = self.monitor[: -len(TOP_BITRATE)] + f"@{top}"

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # The folder's own run continues under its id; a checkpoint resumed into a folder that
        # holds no run starts a new one (escx.training.resume refused any other case).
        section = checkpoint.get("escx_run")
        stored = section.get("run_id") if isinstance(section, dict) else None
        last = os.path.join(self.dirpath or "", self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        if isinstance(stored, str) and stored and os.path.isfile(last):
            self._run_id = stored
        super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def _use_stable_folder(self, trainer: L.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        # Lightning resolves `ckpt_path="last"` before setup(), in the logger's versioned folder
        # unless dirpath is set; escx's checkpoints live in the stable folder.
        self._use_stable_folder(trainer)
        return super()._find_last_checkpoints(trainer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A new run would overwrite another run's last.ckpt (files are not versioned).
        last = os.path.join(self.dirpath or "", self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        if trainer.ckpt_path is None and os.path.isfile(last):
            raise RunFolderInUse(run_folder_message(self.dirpath))
        super().on_fit_start(trainer, pl_module)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        run = {"run_id": self._run_id}
        job = slurm_job_id()
        if job is not None:  # the requeued job (same id) resumes by itself (resume.py)
            run["slurm_job_id"] = job
        wandb = [lg for lg in trainer.loggers if type(lg).__name__ == "WandbLogger"]
        if wandb:  # `--ckpt_path last` continues this W&B run (escx.training.resume)
            run["wandb_run_id"] = str(wandb[0].version)
        checkpoint["escx_run"] = run
        super().on_save_checkpoint(trainer, pl_module, checkpoint)

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
        self._saved_on_stop = False
        if self.save_on_exception:
            self._stops.install()
        super().on_train_start(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
        signum = self._stops.agreed(trainer) if self.save_on_exception else 0
        if signum:  # Ctrl-C, SIGTERM or SLURM's SIGUSR1 arrived during this batch: save here
            requeued = signum == REQUEUE_SIGNAL
            self._save_resumable(trainer, signal_name(signum), requeued)
            self._saved_on_stop = True
            if signum == REQUEUE_SIGNAL and trainer.is_global_zero:
                requeue()  # after the save: the requeued job must find this last.ckpt
            raise stop_exception(signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stops.restore()
        # A run that stops between validations (max_steps) still leaves its final state.
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._stops.restore()
        started = getattr(self, "_training_started", False)
        if not (self.save_on_exception and started and trainer.state.fn == "fit" and self.dirpath):
            return
        if not getattr(self, "_saved_on_stop", False):  # an error, or Ctrl-C pressed twice
            self._save_resumable(trainer, type(exception).__name__)

    def _save_resumable(self, trainer: L.Trainer, reason: str, requeued: bool = False) -> None:
        path = os.path.join(self.dirpath, self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)
        trainer.save_checkpoint(path)
        self.last_model_path = path
        how = "the requeued job resumes from it" if requeued else "resume with --ckpt_path last"
        log.warning("training stopped (%s); resumable checkpoint written to %s (%s)", reason,
                    path, how)  # fmt: skip


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
