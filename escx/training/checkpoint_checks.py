"""What ``--ckpt_path`` of ``escx fit|validate|test`` must be, checked before anything is written.

Lightning reads the file late (after the run folder's ``config.yaml`` is rewritten) and fails
with a traceback when it is not what it expects. escx reads it first, once, with
``weights_only=True``, and refuses in one line:

* a file that is not a training checkpoint (an ``.escx`` bitstream, a codec checkpoint from
  ``escx convert``, a weights-only save, a damaged file);
* a checkpoint whose tensors do not fit the model the config builds (``fit --ckpt_path last``
  after the model YAML changed): names and shapes are compared before Lightning loads them;
* a checkpoint of another run resumed into a folder that holds a run (:func:`check_same_run`).

The checkpoint's ``hyper_parameters`` are *not* merged over the config, as Lightning's own
``LightningCLI`` does: the options and config files given win, and each value that differs from
the checkpoint's is logged as a warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from escx.checkpoint import CheckpointError, safe_torch_load
from escx.commands.common import CommandError
from escx.security import SizeLimitError, check_tree_size

log = logging.getLogger(__name__)

VERSION_KEY = "pytorch-lightning_version"
# What Lightning needs to resume training (it raises KeyError or worse without them).
TRAINING_STATE = ("optimizer_states", "lr_schedulers", "loops", "epoch", "global_step")
# Small sections escx and Lightning walk; bounded like a config (escx.security.limits).
SMALL_SECTIONS = ("hyper_parameters", "datamodule_hyper_parameters", "escx", "escx_run", "loops")


def read_training_checkpoint(path: str | os.PathLike, subcommand: str) -> dict[str, Any]:
    """Load ``path`` for ``escx fit|validate|test`` and check it is a Lightning training
    checkpoint escx can use.

    Raises:
        CommandError: one line saying what the file is and what to pass instead.
    """
    path = Path(path)
    try:
        blob = safe_torch_load(path, "training checkpoint")
    except CheckpointError as error:
        raise CommandError(str(error)) from None
    if not isinstance(blob, dict) or not isinstance(blob.get("state_dict"), dict):
        raise CommandError(
            f"{path} is not a training checkpoint (no state_dict); pass a checkpoint written by "
            "escx fit (RUN/checkpoints/last.ckpt)"
        )
    if VERSION_KEY not in blob:
        kind = "a codec checkpoint (escx convert)" if "escx" in blob else "not a Lightning one"
        raise CommandError(
            f"{path} is {kind}: it holds no training state for escx {subcommand}; evaluate a "
            f"codec checkpoint with escx eval --model {path} --data DIR"
        )
    _check_version(path, blob[VERSION_KEY])
    for section in SMALL_SECTIONS:
        try:
            check_tree_size(blob.get(section), f"{path}: {section}")
        except SizeLimitError as error:
            raise CommandError(str(error)) from None
    missing = [key for key in TRAINING_STATE if key not in blob]
    if subcommand == "fit" and missing:
        raise CommandError(
            f"{path} holds weights only (no {missing[0]}), so training cannot resume from it; "
            "resume from last.ckpt, or test it with escx test --ckpt_path"
        )
    return blob


def _check_version(path: Path, version: Any) -> None:
    from packaging.version import InvalidVersion, Version

    try:
        Version(str(version))
    except InvalidVersion:
        raise CommandError(
            f"{path} is damaged: its {VERSION_KEY} {str(version)[:40]!r} is not a version"
        ) from None


def run_id(blob: dict[str, Any]) -> str | None:
    """The escx run id stored by EscxCheckpoint (None for checkpoints that predate it)."""
    section = blob.get("escx_run")
    value = section.get("run_id") if isinstance(section, dict) else None
    return value if isinstance(value, str) and value else None


def check_same_run(path: Path, blob: dict[str, Any], folder: Path) -> None:
    """Refuse to resume a checkpoint into a folder whose ``last.ckpt`` belongs to another run.

    The checkpoint belongs to the folder's run when it lies in the folder's checkpoint folder or
    carries the same run id as the folder's ``last.ckpt``. A folder without ``last.ckpt`` holds no
    run, so any checkpoint may start one there (a new run from those weights; nothing is lost).

    Raises:
        CommandError: the folder holds another run.
    """
    last = folder / "last.ckpt"
    if not last.is_file() or path.resolve().parent == folder.resolve():
        return
    theirs = run_id(blob)
    if theirs is not None:
        try:
            ours = run_id(safe_torch_load(last, "training checkpoint"))
        except CheckpointError as error:
            raise CommandError(str(error)) from None
        if ours == theirs:
            return
    raise CommandError(
        f"{path} is not from the run whose last.ckpt is in {folder}, and resuming it there would "
        f"overwrite that run; resume that run with --ckpt_path last, or start from {path} in a "
        "new folder (--trainer.default_root_dir DIR)"
    )


def check_fits_model(path: Path, blob: dict[str, Any], model: Any) -> None:
    """Refuse a checkpoint whose tensors do not match the model's names and shapes.

    Raises:
        CommandError: the first tensor that differs and where the run's config is.
    """
    theirs = blob["state_dict"]
    ours = model.state_dict()
    missing = [k for k in ours if k not in theirs]
    extra = [k for k in theirs if k not in ours]
    shapes = [
        k
        for k in ours
        if k in theirs and tuple(getattr(theirs[k], "shape", ())) != tuple(ours[k].shape)
    ]
    if not (missing or extra or shapes):
        return
    if shapes:
        key = shapes[0]
        first = (
            f"{key} is {tuple(theirs[key].shape)} in the checkpoint and {tuple(ours[key].shape)} "
            "in the config"
        )
    elif missing:
        first = f"the config's {missing[0]} is not in the checkpoint"
    else:
        first = f"the checkpoint's {extra[0]} is not in the config's model"
    count = len(missing) + len(extra) + len(shapes)
    saved = path.resolve().parent.parent / "config.yaml"
    hint = f"--config {saved}" if saved.is_file() else "the config it was trained with"
    raise CommandError(
        f"{path} does not fit the model of this config ({first}; {count} tensors differ); pass "
        f"{hint}"
    )


def warn_overridden_hyper_parameters(path: Path, blob: dict[str, Any], model_config: Any) -> None:
    """Log each model option whose value here differs from the one stored in the checkpoint."""
    stored = blob.get("hyper_parameters")
    if not isinstance(stored, dict) or model_config is None:
        return
    for key, value in stored.items():
        if key.startswith("_") or key not in model_config:
            continue
        given = _plain(model_config[key])
        if given != _plain(value):
            log.warning(
                "model.%s is %r here and %r in %s; the value given here is used",
                key,
                given,
                value,
                path,
            )


def _plain(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, tuple):
        return list(value)
    return value
