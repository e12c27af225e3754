"""One run per folder, and ``escx fit --ckpt_path last`` that resumes it, W&B run included.

Checked on the parsed ``escx fit`` config, before anything is instantiated, so a refused start
leaves the folder as it was (no config.yaml rewritten, no new W&B run):

* a new run (no ``--ckpt_path``) in a folder whose checkpoint folder holds ``last.ckpt`` is a
  one-line error that says to resume or pick another folder;
* ``--ckpt_path last`` becomes the path of that ``last.ckpt`` (Lightning would look for it in the
  logger's versioned folder), and a W&B logger gets the run id stored in it, so the resumed run
  continues the same W&B run. With no ``last.ckpt`` yet the run starts from scratch, as in
  Lightning, so a script may always pass ``--ckpt_path last``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from escx.checkpoint import CheckpointError, safe_torch_load
from escx.commands.common import CommandError
from escx.training.checkpointing import run_folder_message

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


def prepare_fit(config: Any, default_root: str) -> None:
    """Refuse a new run in a used folder; resolve ``ckpt_path: last``; resume the W&B run.

    Args:
        config: the ``fit`` section of LightningCLI's parsed config (changed in place).
        default_root: the trainer's default ``default_root_dir``.

    Raises:
        CommandError: a new run in a folder that holds one, or an unreadable ``last.ckpt``.
    """
    trainer = config.get("trainer", {})
    folder = checkpoint_folder(trainer, default_root)
    last = folder / LAST
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is None:
        if last.is_file():
            raise CommandError(run_folder_message(folder))
        return
    if ckpt_path != "last":
        _resume_wandb(trainer, Path(ckpt_path))
        return
    if not last.is_file():
        log.warning("--ckpt_path last: no %s yet, so this run starts from scratch", last)
        config["ckpt_path"] = None
        return
    config["ckpt_path"] = os.fspath(last)
    _resume_wandb(trainer, last)


def _resume_wandb(trainer: Any, checkpoint: Path) -> None:
    """Give a W&B logger the run id stored in ``checkpoint`` (written by EscxCheckpoint)."""
    loggers = [
        item
        for item in _items(trainer.get("logger"))
        if str(getattr(item, "class_path", "")).endswith("WandbLogger")
    ]
    if not loggers or not checkpoint.is_file():
        return
    try:
        blob = safe_torch_load(checkpoint, "training checkpoint")
    except CheckpointError as error:
        raise CommandError(str(error)) from None
    run_id = (blob.get("escx_run") or {}).get("wandb_run_id") if isinstance(blob, dict) else None
    del blob
    if not run_id:
        return
    init = loggers[0].init_args
    if init.get("id") or init.get("version"):  # the user chose the run
        return
    init["id"] = run_id
    extra = dict(loggers[0].get("dict_kwargs") or {})
    extra.setdefault("resume", "allow")
    loggers[0]["dict_kwargs"] = extra
    log.info("continuing W&B run %s", run_id)
