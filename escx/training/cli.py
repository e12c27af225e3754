"""Entry point of ``escx fit|validate|test --config experiments/esc.yaml`` (LightningCLI).

The arguments are checked before Lightning is even imported (:mod:`escx.training.argv`): config
files within escx's size bounds, every class they and the options name registered or in a
trusted package, so a typo or a hostile class path costs a few seconds and one line. The run
itself is :class:`escx.training.lightning_cli.EscxCLI`; jsonargparse imports from the trusted
packages only while it parses (:func:`escx.security.import_policy`).
"""

from __future__ import annotations

import os
import sys

from escx.commands.common import EXIT_SIGINT, EXIT_SIGTERM, CommandError
from escx.config import ConfigError, registries
from escx.security import UntrustedClassPath, import_policy
from escx.training.argv import check_arguments
from escx.training.slurm import EXIT_REQUEUED, RequeueExit, install_early_handler
from escx.training.slurm import stopped_message as slurm_stopped_message


def run_lightning(argv: list[str]) -> int:
    """Run a LightningCLI subcommand; config mistakes become one-line errors (exit 2)."""
    registries()  # import built-ins and plug-ins so short class names resolve
    try:
        check_arguments(argv)
    except (ConfigError, UntrustedClassPath) as error:
        raise CommandError(str(error)) from None
    from escx.data.datamodule import AudioDataModule
    from escx.training.lightning_cli import EscxCLI, OneLineErrorParser
    from escx.training.module import CodecModule
    from escx.training.quiet import silence_known_noise

    silence_known_noise()
    install_early_handler()  # under SLURM, SIGUSR1 from now on means "save and requeue"
    EscxCLI.argv = list(argv)
    EscxCLI.checkpoint_dir = None
    # LightningCLI reads sys.argv; set it rather than passing args (which it warns about when
    # both are present), and restore it for in-process callers such as tests. sys.argv[0] stays
    # the program that is running (the console script's absolute path): Lightning's DDP launcher
    # starts the other ranks as `python <sys.argv[0]> <args>`, so it must name a real file.
    saved = sys.argv
    sys.argv = [saved[0] if saved else "escx", *argv]
    try:
        with import_policy():  # jsonargparse imports from trusted packages only
            EscxCLI(
                CodecModule,
                AudioDataModule,
                save_config_kwargs={"overwrite": True},
                parser_class=OneLineErrorParser,
                auto_configure_optimizers=False,
                parser_kwargs={"prog": "escx"},
            )
    except SystemExit as stop:
        code = _interrupted_exit_code(stop)
        if code is None:
            raise
        if os.environ.get("LOCAL_RANK", "0") == "0":  # once, not once per DDP process
            sys.stderr.write(_stopped_message(code) + "\n")
        return code
    finally:
        sys.argv = saved
    return 0


def _stopped_message(code: int) -> str:
    """What to do after Ctrl-C or SIGTERM: resume only when a checkpoint was written."""
    from escx.training.lightning_cli import EscxCLI

    if code == EXIT_REQUEUED:
        return slurm_stopped_message()
    signal_name = "SIGTERM" if code == EXIT_SIGTERM else "Ctrl-C"
    folder = EscxCLI.checkpoint_dir
    if folder is not None and (folder / "last.ckpt").is_file():
        return (
            f"escx: training stopped by {signal_name} (exit {code}); resume it with the same "
            "command and --ckpt_path last"
        )
    return (
        f"escx: training stopped by {signal_name} (exit {code}) before its first step, so no "
        "checkpoint was written; run the same command again to start it"
    )


def _interrupted_exit_code(stop: SystemExit) -> int | None:
    """130 or 143 when Lightning ended a run because of Ctrl-C or SIGTERM, 138 when escx stopped
    it for a SLURM requeue (SIGUSR1), else None.

    Lightning turns both into a SystemExit with an ordinary code (0 for SIGTERM, 1 for Ctrl-C),
    so drivers could not tell a stopped run from a finished or failed one.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(stop, RequeueExit):
        return EXIT_REQUEUED
    if isinstance(stop, SIGTERMException):
        return EXIT_SIGTERM
    if isinstance(stop.__context__, KeyboardInterrupt):  # raised in Lightning's Ctrl-C handler
        return EXIT_SIGINT
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_lightning(sys.argv[1:]))
