"""Check ``escx fit`` command lines before a driver starts its first run.

A driver (sweep, ablation, demo) starts one ``escx fit`` per run; a typo in an option it forwards,
or a swept value of the wrong type, used to fail every run, one after the other, each with its
own error. Here every command is parsed once with ``--print_config`` (keys, types, class names,
config files) and the printed config goes through ``escx fit``'s checks of trainer options
(devices, steps), all in one child process, so that a mistake fails once, in one line, before
anything is created. The check may take 120 s plus 10 s per command; ``$ESCX_FIT_CHECK_TIMEOUT``
(seconds) sets another limit, for a machine so loaded that the child starts slowly.

Run as ``python -m escx.experiments.fit_check`` it reads a JSON list of argument lists
(``["fit", ...]``) on stdin and prints a JSON verdict on stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

from escx.commands.common import CommandError

# Seconds for the whole check: the child imports torch and Lightning (about 5 s) and parses
# each command in about 0.5 s; a config that takes longer than this to parse is itself a problem.
TIMEOUT_BASE, TIMEOUT_PER_COMMAND = 120.0, 10.0
# A limit for the whole check instead (seconds), for a machine so loaded that the child is slow.
TIMEOUT_VARIABLE = "ESCX_FIT_CHECK_TIMEOUT"
MAX_TIMEOUT = 86_400.0  # a day; far larger values overflow the wait (1e9 s: OverflowError)
ESCX_CLI = [sys.executable, "-m", "escx.cli"]


def fit_arguments(cmd: Sequence[str]) -> list[str]:
    """The arguments after ``escx`` of a driver's command (``python -m escx.cli fit ...``)."""
    cmd = list(cmd)
    if cmd[:3] != ESCX_CLI or len(cmd) < 4 or cmd[3] != "fit":
        raise ValueError(f"not an escx fit command: {cmd[:4]}")
    return cmd[3:]


def check_timeout(count: int) -> float:
    """Seconds the check of ``count`` commands may take: ``$ESCX_FIT_CHECK_TIMEOUT`` when set,
    else ``TIMEOUT_BASE + TIMEOUT_PER_COMMAND * count``.

    Raises:
        CommandError: the variable is set to something other than seconds above 0 and at most
            ``MAX_TIMEOUT``.
    """
    setting = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not setting:
        return TIMEOUT_BASE + TIMEOUT_PER_COMMAND * count
    try:
        seconds = float(setting)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_TIMEOUT:  # also refuses nan
        raise CommandError(
            f"{TIMEOUT_VARIABLE}={setting!r} in the environment: write a number of seconds above "
            f"0 and at most {MAX_TIMEOUT:,.0f} (e.g. {TIMEOUT_VARIABLE}=600), or unset it for "
            f"the default ({TIMEOUT_BASE:.0f} s + {TIMEOUT_PER_COMMAND:.0f} s per run)"
        )
    return seconds


def check_fit_commands(
    commands: Sequence[Sequence[str]],
    labels: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> None:
    """Dry-parse every ``escx fit`` command; the first that fails raises.

    Args:
        commands: full commands as the driver will run them (``python -m escx.cli fit ...``).
        labels: what each command is, for the message ("sweep run 3 (lr=abc)").
        env: environment of the runs (default: this process's).

    Raises:
        CommandError: ``LABEL: <escx fit's one-line error>``; the check took longer than
            :func:`check_timeout` allows; ``$ESCX_FIT_CHECK_TIMEOUT`` is not a valid limit.
    """
    timeout = check_timeout(len(commands))  # a bad setting fails even with nothing to check
    if not commands:
        return
    payload = json.dumps([fit_arguments(cmd) for cmd in commands])
    environment = {**(env if env is not None else os.environ), "WANDB_MODE": "disabled"}
    try:
        child = subprocess.run(
            [sys.executable, "-m", "escx.experiments.fit_check"],
            input=payload,
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        runs = f"{len(commands)} run" + ("s" if len(commands) != 1 else "")
        longer = max(600, math.ceil(4 * timeout))
        raise CommandError(
            f"checking the escx fit options of {runs} took over {timeout:g} s; on a busy "
            f"machine allow longer with {TIMEOUT_VARIABLE}=SECONDS in the environment (e.g. "
            f"{TIMEOUT_VARIABLE}={longer})"
        ) from None
    verdict = _verdict(child.stdout)
    if verdict is None:
        lines = [line for line in child.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit {child.returncode}"
        raise CommandError(f"could not check the escx fit options: {last}")
    index = verdict.get("failed")
    if index is not None:
        raise CommandError(f"{labels[index]}: {verdict['message']}")


def _verdict(stdout: str) -> dict | None:
    lines = stdout.strip().splitlines()
    try:
        verdict = json.loads(lines[-1]) if lines else None
    except ValueError:
        return None
    return verdict if isinstance(verdict, dict) else None


def _error_line(text: str, code: object) -> str:
    """escx's one-line error out of what a parse wrote to stderr (warnings may precede it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("escx: error:")]
    line = errors[-1] if errors else (lines[-1] if lines else f"escx fit failed (exit {code})")
    return line.removeprefix("escx: error: ")


def _check_all(arguments: list[list[str]]) -> dict:
    """Parse each argument list as ``escx ... --print_config``, then apply escx fit's checks of
    the parsed trainer options (devices, steps) to the config it prints; stop at the first
    failure."""
    from escx.cli import main

    for index, argv in enumerate(arguments):
        printed, errors = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(errors):
            try:
                code = main([*argv, "--print_config"])
            except SystemExit as stop:  # --print_config exits 0; a parse error exits 2
                code = stop.code
            except Exception as error:  # anything escx fit would have stopped on
                errors.write(f"escx: error: {type(error).__name__}: {error}\n")
                code = 1
            if code in (0, None):
                code = _check_parsed(printed.getvalue(), errors)
        if code not in (0, None):
            return {"failed": index, "message": _error_line(errors.getvalue(), code)}
    return {"failed": None}


def _check_parsed(printed: str, errors: io.StringIO) -> int:
    """escx fit's checks of trainer options, which run after parsing (so ``--print_config``
    skips them), applied to the printed config; 0 when they pass."""
    import yaml

    from escx.training.trainer_checks import check_trainer_options

    try:
        check_trainer_options(yaml.safe_load(printed) or {})
    except CommandError as error:
        errors.write(f"escx: error: {error}\n")
        return error.code
    return 0


def _main() -> int:
    arguments = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(_check_all(arguments)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
