"""escx's LightningCLI: trainer defaults, config links, and checks before anything is built.

Defaults for the trainer (W&B offline logging, checkpoints, media logging, step budget) are set
here so that experiment YAMLs list only what differs. The trainer options and ``--ckpt_path``
are checked right after parsing (:mod:`escx.training.trainer_checks`,
:mod:`escx.training.resume`), the checkpoint against the model before the trainer exists, so a
refused run leaves its folder as it was. Started by :func:`escx.training.cli.run_lightning`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from escx.commands.common import CommandError
from escx.security import untrusted_message
from escx.training.checkpoint_checks import check_fits_model, warn_overridden_hyper_parameters
from escx.training.checkpointing import EscxCheckpoint
from escx.training.media import MediaLogger
from escx.training.module import CodecModule
from escx.training.naming import run_identity
from escx.training.quiet import drop_unset_wandb_anonymous
from escx.training.resume import checkpoint_folder, prepare_fit, resolve_eval_checkpoint
from escx.training.summary import MetricsSummary
from escx.training.trainer_checks import allow_unused_parameters, check_trainer_options

DEFAULT_ROOT = "runs/escx"


_DENIED_IMPORT = re.compile(r"Importing '([^']+)' is not allowed")


class OneLineErrorParser(LightningArgumentParser):
    """Reports a command-line mistake as one line (exit code 2) instead of the full usage."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        if not self.exit_on_error:
            super().error(message, ex)
        text = " ".join(str(message).split())
        denied = _DENIED_IMPORT.search(text)
        if denied:  # jsonargparse's import policy (escx.security.import_policy) refused it
            sys.stderr.write(f"escx: error: {untrusted_message(denied[1], 'option')}\n")
            raise SystemExit(2)
        words = self.prog.split()  # "escx", or "escx [options] fit" for a subcommand
        command = f"escx {words[-1]}" if len(words) > 1 else "escx"
        sys.stderr.write(f"escx: error: {text} (see {command} --help)\n")
        raise SystemExit(2)


class EscxCLI(LightningCLI):
    """LightningCLI with escx's trainer defaults, config links and checks of the trainer options
    and ``--ckpt_path`` (:mod:`escx.training.trainer_checks`, :mod:`escx.training.resume`)."""

    argv: list[str] = []
    checkpoint_dir: Path | None = None  # where this run's last.ckpt is written (fit)

    def add_arguments_to_parser(self, parser: Any) -> None:
        from jsonargparse import lazy_instance

        parser.set_defaults(
            {
                "seed_everything": 53,
                "trainer.default_root_dir": DEFAULT_ROOT,
                "trainer.max_steps": 400_000,
                "trainer.log_every_n_steps": 50,
                "trainer.logger": lazy_instance(
                    WandbLogger, project="escx", save_dir=DEFAULT_ROOT, offline=True
                ),
                "trainer.plugins": [
                    {"class_path": "escx.training.checkpointing.AtomicCheckpointIO"}
                ],
                "trainer.callbacks": [
                    {"class_path": f"{cls.__module__}.{cls.__name__}"}
                    for cls in (EscxCheckpoint, MediaLogger, MetricsSummary)
                ],
            }
        )
        # The codec's sample rate is the one place it is set; the data is read at that rate.
        parser.link_arguments(
            "model", "data.sample_rate", compute_fn=_codec_rate, apply_on="instantiate"
        )

    def _set_seed(self) -> None:
        # Lightning logs "Seed set to N" here, before the model and data module are built; a
        # config they refuse must leave one line on stderr, so the line waits for the trainer.
        seed_log = logging.getLogger("lightning.fabric.utilities.seed")
        level = seed_log.level
        seed_log.setLevel(logging.WARNING)
        try:
            super()._set_seed()
        finally:
            seed_log.setLevel(level)

    def _parse_ckpt_path(self) -> None:
        """Replaces Lightning's, which merges the checkpoint's hyper-parameters over the options
        given (silently) and reads any file with a traceback on failure: here the trainer
        options and the checkpoint are checked, before anything is instantiated or written."""
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand, self.config) if subcommand else self.config
        check_trainer_options(config)
        EscxCLI.checkpoint_dir = checkpoint_folder(config.get("trainer", {}), DEFAULT_ROOT)
        if subcommand == "fit":
            self.checkpoint = prepare_fit(config, DEFAULT_ROOT)
        elif subcommand in ("validate", "test", "predict"):
            self.checkpoint = resolve_eval_checkpoint(config, subcommand, DEFAULT_ROOT)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        self.roots = _point_logger_at_root(config)
        allow_unused_parameters(config)
        _name_run(config, self.argv)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        drop_unset_wandb_anonymous(self.trainer.loggers)  # before the first log starts the run
        config = self.config.get(self.subcommand, self.config)
        codec = config.get("model", {}).get("codec")
        if codec is not None:
            self.model.codec.escx_config = _plain(codec)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        # The model exists now, the trainer not yet: the checkpoint is checked against the model
        # before Lightning prints, spawns or writes anything.
        if getattr(self, "checkpoint", None) is not None:
            config = self.config.get(self.subcommand, self.config)
            path = Path(config["ckpt_path"])
            check_fits_model(path, self.checkpoint, self.model)
            warn_overridden_hyper_parameters(path, self.checkpoint, config.get("model"))
            self.checkpoint = None  # Lightning reads the file itself (through AtomicCheckpointIO)
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        try:
            trainer = super().instantiate_trainer(**kwargs)
        except MisconfigurationException as error:  # a Trainer option Lightning refuses
            raise CommandError(" ".join(str(error).split())) from None
        seed = self.config.get(self.subcommand, self.config).get("seed_everything")
        if seed is not None and seed is not False:
            logging.getLogger("lightning.fabric.utilities.seed").info("Seed set to %s", seed)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        for root in getattr(self, "roots", []):  # logger folders, made only for a run that starts
            os.makedirs(root, exist_ok=True)
        super()._run_subcommand(subcommand)


def _name_run(config: Any, argv: list[str]) -> None:
    """Give W&B runs a name and tags from their composition unless the user set them."""
    codec = config.get("model", {}).get("codec") or {}
    name, tags = run_identity(codec, argv)
    logger = config.get("trainer", {}).get("logger")
    for item in logger if isinstance(logger, list) else [logger]:
        if not str(getattr(item, "class_path", "")).endswith("WandbLogger"):
            continue
        init = item.init_args
        if not init.get("name"):
            init["name"] = name
        # WandbLogger forwards extra keyword arguments (tags, group) to wandb.init.
        extra = dict(item.get("dict_kwargs") or {})
        extra["tags"] = list(dict.fromkeys([*(extra.get("tags") or []), *tags]))
        item["dict_kwargs"] = extra


def _codec_rate(model: CodecModule) -> int:
    return model.codec.sample_rate


def _plain(value: Any) -> Any:
    """jsonargparse Namespace tree -> plain dicts and lists (for checkpoints)."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _point_logger_at_root(config: Any) -> list[str]:
    """Keep W&B files under the run's root folder unless the user chose a folder.

    Returns:
        The folders to create when the run starts (not before: a refused run leaves none).
    """
    trainer = config.get("trainer", {})
    root = trainer.get("default_root_dir") or DEFAULT_ROOT
    logger = trainer.get("logger")
    loggers = logger if isinstance(logger, list) else [logger]
    roots = []
    for item in loggers:
        init = getattr(item, "init_args", None)
        if init is not None and "save_dir" in init and init.get("save_dir") == DEFAULT_ROOT:
            init["save_dir"] = root
            roots.append(root)
    return roots
