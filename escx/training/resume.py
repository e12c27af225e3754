"""One run per folder, and ``escx fit --ckpt_path last`` that resumes it, W&B run included.

Checked on the parsed ``escx fit`` config, before anything is instantiated, so a refused start
leaves the folder as it was (no config.yaml rewritten, no new W&B run):

* a new run (no ``--ckpt_path``) in a folder whose checkpoint folder holds ``last.ckpt`` is a
  one-line error that says to resume or pick another folder, except under SLURM when that
  ``last.ckpt`` was written by this very job: a requeued job reruns its command unchanged, and
  resumes (:mod:`escx.training.slurm`);
* ``--ckpt_path last`` becomes the path of that ``last.ckpt`` (Lightning would look for it in the
  logger's versioned folder), and a W&B logger gets the run id stored in it, so the resumed run
  continues the same W&B run. With no ``last.ckpt`` yet the run starts from scratch, as in
  Lightning, so a script may always pass ``--ckpt_path last``;
* ``--ckpt_path FILE`` must be a training checkpoint of the folder's own run when the folder
  holds one (resuming another run there would overwrite its ``last.ckpt``); into a folder with
  no run it starts a new run from those weights, with a new run id and W&B run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from escx.commands.common import CommandError
from escx.training.checkpoint_checks import check_same_run, read_training_checkpoint
from escx.training.checkpointing import run_folder_message
from escx.training.slurm import same_job_message, slurm_job_id

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def checkpoint_folder(trainer: Any, default_root: str) -> Path:
    """Where the run's EscxCheckpoint writes: its ``dirpath``, else ``<root>/checkpoints``."""
    for callback in _items(trainer.get("callbacks")):
        if str(getattr(callback, "class_path", "")).endswith("EscxCheckpoint"):
            dirpath = (callback.get("init_args") or {}).get("dirpath")
            if dirpath:
                return Path(dirpath)
    return Path(trainer.get("default_root_dir") or default_root) / "checkpoints"


def prepare_fit(config: Any, default_root: str) -> dict[str, Any] | None:
    """Refuse a new run in a used folder; resolve ``ckpt_path: last``; check the checkpoint
    belongs to the folder's run; resume the W&B run.

    Args:
        config: the ``fit`` section of LightningCLI's parsed config (changed in place).
        default_root: the trainer's default ``default_root_dir``.

    Returns:
        The checkpoint to resume (read once, checked by
        :func:`escx.training.checkpoint_checks.read_training_checkpoint`), or None.

    Raises:
        CommandError: a new run in a folder that holds one, a checkpoint of another run into it,
            or a checkpoint that is not a training checkpoint.
    """
    trainer = config.get("trainer", {})
    folder = checkpoint_folder(trainer, default_root)
    last = folder / LAST
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is None:
        if not last.is_file():
            return None
        if slurm_job_id() is None:
            raise CommandError(run_folder_message(folder))
        blob = _requeued_job_checkpoint(last, folder)  # a requeued job resumes its own run
        config["ckpt_path"] = os.fspath(last)
        _resume_wandb(trainer, blob)
        return blob
    if ckpt_path == "last":
        if not last.is_file():
            log.warning("--ckpt_path last: no %s yet, so this run starts from scratch", last)
            config["ckpt_path"] = None
            return None
        config["ckpt_path"] = ckpt_path = os.fspath(last)
    path = Path(ckpt_path)
    blob = read_training_checkpoint(path, "fit")
    check_same_run(path, blob, folder)
    if last.is_file():  # the folder's own run goes on, in its W&B run too
        _resume_wandb(trainer, blob)
    return blob


def _requeued_job_checkpoint(last: Path, folder: Path) -> dict[str, Any]:
    """``last`` read and checked, if this SLURM job wrote it (a requeued job keeps its id).

    Raises:
        CommandError: another job's run, or a run started outside SLURM.
    """
    blob = read_training_checkpoint(last, "fit")
    section = blob.get("escx_run")
    stored = section.get("slurm_job_id") if isinstance(section, dict) else None
    if stored != slurm_job_id():
        raise CommandError(same_job_message(folder, stored if isinstance(stored, str) else None))
    log.warning(
        "SLURM job %s (restart %s) resumes its run from %s",
        stored,
        os.environ.get("SLURM_RESTART_COUNT", "?"),
        last,
    )
    return blob


def resolve_eval_checkpoint(config: Any, subcommand: str, default_root: str) -> dict | None:
    """``validate``/``test``: ``--ckpt_path last`` names the folder's ``last.ckpt``; the file is
    read and checked (:func:`read_training_checkpoint`). Returns it, or None without one."""
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = checkpoint_folder(config.get("trainer", {}), default_root) / LAST
        if not last.is_file():
            raise CommandError(f"--ckpt_path last: there is no {last}; pass a checkpoint file")
        config["ckpt_path"] = ckpt_path = os.fspath(last)
    return read_training_checkpoint(Path(ckpt_path), subcommand)


def _resume_wandb(trainer: Any, blob: dict[str, Any]) -> None:
    """Give a W&B logger the run id stored in the checkpoint (written by EscxCheckpoint)."""
    loggers = [
        item
        for item in _items(trainer.get("logger"))
        if str(getattr(item, "class_path", "")).endswith("WandbLogger")
    ]
    section = blob.get("escx_run")
    run_id = section.get("wandb_run_id") if isinstance(section, dict) else None
    if not loggers or not isinstance(run_id, str) or not run_id:
        return
    init = loggers[0].init_args
    if init.get("id") or init.get("version"):  # the user chose the run
        return
    init["id"] = run_id
    extra = dict(loggers[0].get("dict_kwargs") or {})
    extra.setdefault("resume", "allow")
    loggers[0]["dict_kwargs"] = extra
    log.info("continuing W&B run %s", run_id)
