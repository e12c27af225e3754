"""LightningCLI entry point: ``escx fit|validate|test --config experiments/esc.yaml``.

Defaults for the trainer (W&B offline logging, checkpoints, media logging, step budget) are set
here so that experiment YAMLs list only what differs. Component names in configs are checked
against the registries before parsing, so a typo gets a one-line "did you mean" error.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger

from escx.commands.common import EXIT_SIGINT, EXIT_SIGTERM, CommandError
from escx.config import COMPONENT_KEYS, ConfigError, check_class_names, load_yaml, registries
from escx.data.datamodule import AudioDataModule
from escx.training.checkpointing import EscxCheckpoint
from escx.training.media import MediaLogger
from escx.training.module import CodecModule
from escx.training.naming import run_identity
from escx.training.quiet import drop_unset_wandb_anonymous, silence_known_noise
from escx.training.resume import prepare_fit
from escx.training.summary import MetricsSummary

DEFAULT_ROOT = "runs/escx"


class OneLineErrorParser(LightningArgumentParser):
    """Reports a command-line mistake as one line (exit code 2) instead of the full usage."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        if not self.exit_on_error:
            super().error(message, ex)
        text = " ".join(str(message).split())
        words = self.prog.split()  # "escx", or "escx [options] fit" for a subcommand
        command = f"escx {words[-1]}" if len(words) > 1 else "escx"
        sys.stderr.write(f"escx: error: {text} (see {command} --help)\n")
        raise SystemExit(2)


class EscxCLI(LightningCLI):
    """LightningCLI with escx's trainer defaults and config links."""

    argv: list[str] = []

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

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config)
        if self.subcommand == "fit":
            prepare_fit(config, DEFAULT_ROOT)
        _point_logger_at_root(config)
        _allow_unused_parameters(config)
        _name_run(config, self.argv)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        drop_unset_wandb_anonymous(self.trainer.loggers)  # before the first log starts the run
        config = self.config.get(self.subcommand, self.config)
        codec = config.get("model", {}).get("codec")
        if codec is not None:
            self.model.codec.escx_config = _plain(codec)


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


def _point_logger_at_root(config: Any) -> None:
    """Keep W&B files under the run's root folder unless the user chose a folder."""
    trainer = config.get("trainer", {})
    root = trainer.get("default_root_dir") or DEFAULT_ROOT
    logger = trainer.get("logger")
    loggers = logger if isinstance(logger, list) else [logger]
    for item in loggers:
        init = getattr(item, "init_args", None)
        if init is not None and "save_dir" in init and init.get("save_dir") == DEFAULT_ROOT:
            init["save_dir"] = root
            os.makedirs(root, exist_ok=True)


def _device_count(devices: Any, accelerator: Any) -> int:
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if str(devices) in ("auto", "-1"):
        import torch

        gpu = str(accelerator) in ("auto", "gpu", "cuda")
        return torch.cuda.device_count() if gpu and torch.cuda.is_available() else 1
    try:
        return int(devices)
    except (TypeError, ValueError):
        return 1


def _allow_unused_parameters(config: Any) -> None:
    """Use DDP with unused-parameter detection when training on several devices.

    Codebooks get no gradient during pre-training (the quantizer is bypassed) and for streams
    dropped by quantizer dropout, which plain DDP rejects. ``ddp`` (or ``auto`` on several
    devices) therefore becomes ``ddp_find_unused_parameters_true``, ``ddp_spawn`` likewise.
    """
    trainer = config.get("trainer", {})
    strategy = trainer.get("strategy")
    if not isinstance(strategy, str):
        return
    if strategy == "auto" and _device_count(trainer.get("devices"), trainer.get("accelerator")) > 1:
        strategy = "ddp"
    if strategy in ("ddp", "ddp_spawn"):
        trainer["strategy"] = f"{strategy}_find_unused_parameters_true"


def _option(argv: list[str], name: str) -> str | None:
    """The last value given for option ``name`` (``--name VALUE`` or ``--name=VALUE``)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _config_files(argv: list[str]) -> list[str]:
    files = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def _class_names_on_command_line(argv: list[str]) -> dict:
    """Component names given as options (``--model.codec.init_args.quantizer CrossScaleRVQ`` or
    ``...quantizer.class_path=...``) as a config tree, so a typo gets the same "did you mean"
    line as in YAML instead of jsonargparse's multi-line dump."""
    tree: dict = {}
    for i, arg in enumerate(argv):
        if not arg.startswith("--") or arg.startswith("--config"):
            continue
        key, has_value, value = arg[2:].partition("=")
        if not has_value:
            if i + 1 >= len(argv):
                continue
            value = argv[i + 1]
        parts = key.split(".")
        if parts[-1] == "class_path":
            parts = parts[:-1]
        if not parts or parts[-1] not in COMPONENT_KEYS or not _looks_like_class_name(value):
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = {"class_path": value}
    return tree


def _looks_like_class_name(value: str) -> bool:
    """A bare or dotted class name, not a YAML/JSON value, a file path or null."""
    if value.lower() in ("null", "none") or value.endswith((".yaml", ".yml", ".json")):
        return False
    return re.fullmatch(r"[A-Za-z_][\w.]*", value) is not None and not os.path.exists(value)


def run_lightning(argv: list[str]) -> int:
    """Run a LightningCLI subcommand; config mistakes become one-line errors (exit 2)."""
    registries()  # import built-ins and plug-ins so short class names resolve
    silence_known_noise()
    try:
        for path in _config_files(argv):
            check_class_names(load_yaml(path), path)
        check_class_names(_class_names_on_command_line(argv), "command line")
    except ConfigError as error:
        raise CommandError(str(error)) from None
    EscxCLI.argv = list(argv)
    # LightningCLI reads sys.argv; set it rather than passing args (which it warns about when
    # both are present), and restore it for in-process callers such as tests. sys.argv[0] stays
    # the program that is running (the console script's absolute path): Lightning's DDP launcher
    # starts the other ranks as `python <sys.argv[0]> <args>`, so it must name a real file.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "escx", *argv]
    try:
        EscxCLI(
            CodecModule,
            AudioDataModule,
            save_config_kwargs={"overwrite": True},
            parser_class=OneLineErrorParser,
            auto_configure_optimizers=False,
            parser_kwargs={"prog": "escx"},
        )
    except pickle.UnpicklingError:  # LightningCLI reads --ckpt_path's hyper-parameters itself
        raise CommandError(
            f"refusing to load {_option(argv, '--ckpt_path') or 'the checkpoint'}: it stores "
            "Python objects other than tensors and plain values, and unpickling them could run "
            "code; pass a checkpoint written by escx fit"
        ) from None
    except SystemExit as stop:
        code = _interrupted_exit_code(stop)
        if code is None:
            raise
        signal_name = "SIGTERM" if code == EXIT_SIGTERM else "Ctrl-C"
        if os.environ.get("LOCAL_RANK", "0") == "0":  # once, not once per DDP process
            sys.stderr.write(
                f"escx: training stopped by {signal_name} (exit {code}); resume it with the "
                "same command and --ckpt_path last\n"
            )
        return code
    finally:
        sys.argv = saved
    return 0


def _interrupted_exit_code(stop: SystemExit) -> int | None:
    """130 or 143 when Lightning ended a run because of Ctrl-C or SIGTERM, else None.

    Lightning turns both into a SystemExit with an ordinary code (0 for SIGTERM, 1 for Ctrl-C),
    so drivers could not tell a stopped run from a finished or failed one.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(stop, SIGTERMException):
        return EXIT_SIGTERM
    if isinstance(stop.__context__, KeyboardInterrupt):  # raised in Lightning's Ctrl-C handler
        return EXIT_SIGINT
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_lightning(sys.argv[1:]))
