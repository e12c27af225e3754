"""Launching ``escx fit`` from drivers (demo, ablations, sweeps): resume, refuse, propagate.

A driver owns one run folder per training run. Run again, it resumes the run in that folder
(``--ckpt_path last``) when the folder's run was started with the same command, so an interrupted
study continues where it stopped and a finished run is not trained twice; a folder holding a run
made with other options is an error, never silently reused or overwritten. A run stopped by
Ctrl-C or SIGTERM (exit 130 or 143) stops the driver with the same exit code.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from escx.commands.common import EXIT_SIGINT, EXIT_SIGTERM, CommandError

EXIT_STOPPED = (EXIT_SIGINT, EXIT_SIGTERM)  # escx fit after Ctrl-C / SIGTERM
COMMAND_FILE = "command.txt"


def fit_command(configs: Sequence[str], *options: str) -> list[str]:
    """``escx fit`` with stacked configs and options, in this interpreter's environment."""
    cmd = [sys.executable, "-m", "escx.cli", "fit"]
    for config in configs:
        cmd += ["--config", config]
    return [*cmd, *options]


class RunStopped(CommandError):
    """A training run was stopped by Ctrl-C or SIGTERM; ``code`` is its exit code."""


def resumable_command(cmd: Sequence[str], root: Path) -> list[str]:
    """``cmd`` plus ``--ckpt_path last`` when ``root`` holds a run started by the same command.

    Records the command in ``root/command.txt``.

    Raises:
        CommandError: ``root`` holds a run started with other options.
    """
    resume = check_run_folder(cmd, root)
    root.mkdir(parents=True, exist_ok=True)
    (root / COMMAND_FILE).write_text(shlex.join(cmd) + "\n")
    return [*cmd, "--ckpt_path", "last"] if resume else list(cmd)


def check_run_folder(cmd: Sequence[str], root: Path) -> bool:
    """Whether ``root`` holds a run of ``cmd`` to resume; changes nothing.

    Raises:
        CommandError: ``root`` holds a run started with other options.
    """
    record = root / COMMAND_FILE
    resume = (root / "checkpoints" / "last.ckpt").is_file()
    if resume and (not record.is_file() or record.read_text() != shlex.join(cmd) + "\n"):
        raise CommandError(
            f"{root} holds a run started with other options; delete it to start over, or "
            "choose another output folder"
        )
    return resume


def run_fit(
    cmd: Sequence[str],
    root: Path,
    what: str,
    env: Mapping[str, str] | None = None,
    output: IO[str] | None = None,
) -> int:
    """Run ``escx fit`` into ``root`` (resuming its run if it has one); returns the exit code.

    Args:
        cmd: the ``escx fit`` command, without ``--ckpt_path``.
        root: the run folder (``--trainer.default_root_dir`` in ``cmd``).
        what: the run's name, for messages.
        env: environment of the run (default: this process's).
        output: where the run's stdout and stderr go (default: this process's).

    Raises:
        RunStopped: the run was stopped by Ctrl-C or SIGTERM (its last.ckpt is written).
        CommandError: ``root`` holds a run started with other options.
    """
    full = resumable_command(cmd, root)
    with _signals_for_child() as started:
        child = subprocess.Popen(
            full,
            env=dict(env if env is not None else os.environ),
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
        )
        started(child)
        code = child.wait()
    if code < 0:  # killed by a signal before Lightning's handlers were installed
        code = 128 - code
    if code in EXIT_STOPPED:
        raise RunStopped(stopped_message(what, code, root), code=code)
    return code


def stopped_message(what: str, code: int, root: Path) -> str:
    """What to do after a run was stopped: resume its checkpoint, or start again when it was
    stopped before writing one (there is nothing to resume then)."""
    last = root / "checkpoints" / "last.ckpt"
    if last.is_file():
        return (
            f"training {what} was stopped (exit {code}); run the same command again to resume "
            f"it from {last}"
        )
    return (
        f"training {what} was stopped (exit {code}) before it saved a checkpoint; run the same "
        "command again to start it afresh"
    )


@contextmanager
def _signals_for_child() -> Iterator[Callable[[subprocess.Popen], None]]:
    """While a run trains, let it handle Ctrl-C and SIGTERM: it writes last.ckpt and exits with
    130 or 143, which the driver then reports.

    Ctrl-C in a terminal reaches the whole process group, so the driver ignores it (instead of
    dying with a traceback while its run saves). SIGTERM is often sent to the driver alone (a
    scheduler, ``kill PID``), so the driver forwards it to the run.
    """
    previous: dict[int, Any] = {}

    def started(child: subprocess.Popen) -> None:
        # Installed only now: an ignored SIGINT would be inherited by the run itself.
        if threading.current_thread() is not threading.main_thread():
            return

        def forward(signum: int, frame: object) -> None:
            if child.poll() is None:
                child.send_signal(signum)

        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, forward)

    try:
        yield started
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
