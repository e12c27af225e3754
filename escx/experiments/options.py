"""Command-line options of the drivers (``escx sweep``, ``escx ablation``, ``python -m
escx.demo``), checked before anything runs.

An option a driver does not know is refused by the driver itself, with a "did you mean", instead
of being forwarded to every ``escx fit`` run (where a typo such as ``--cuont 1`` made every run of
a grid fail). ``escx sweep`` forwards ``escx fit`` options; they are recognised by their names
here and checked by a dry parse (:mod:`escx.experiments.fit_check`) before the first run.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Sequence

from escx.commands.common import ArgumentParser, CommandError
from escx.security.resources import usable_cores

# Top-level options of `escx fit` (its `--help`); dotted keys below trainer/model/data too.
FIT_OPTIONS = ("--config", "-c", "--seed_everything", "--ckpt_path", "--weights_only")
FIT_GROUPS = ("trainer", "model", "data")
# Options a driver never forwards: they change what `escx fit` does, not how it trains.
NOT_FORWARDED = {
    "--print_config": "it prints the config instead of training",
    "--help": "it prints help instead of training",
    "-h": "it prints help instead of training",
}
# Lightning's seed_everything accepts an unsigned 32-bit seed and raises for any other.
MAX_SEED = 2**32 - 1


class DriverParser(ArgumentParser):
    """argparse for drivers: exact option names only, unknown ones refused with a "did you mean".

    Args:
        forward_fit_options: keep ``escx fit`` options (``--config``, ``--trainer.*``, ...) as
            extra arguments (returned by :meth:`parse_with_fit_options`) instead of refusing them.
    """

    def __init__(self, *args, forward_fit_options: bool = False, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.forward_fit_options = forward_fit_options

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extra = self.parse_with_fit_options(args, namespace)
        if extra:
            self.error(f"unexpected argument {extra[0]!r}")
        return parsed

    def parse_with_fit_options(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """Parse the driver's options; returns them and the ``escx fit`` options to forward."""
        parsed, extra = self.parse_known_args(args, namespace)
        forwarded: list[str] = []
        expects_value = False
        for token in extra:
            if expects_value and not token.startswith("--"):
                forwarded.append(token)  # the value of the forwarded option before it
                expects_value = False
                continue
            name = token.split("=", 1)[0]
            if not token.startswith("-") or token in ("-", "--"):
                self.error(f"unexpected argument {token!r}")
            if name in NOT_FORWARDED:
                self.error(f"{name} cannot be passed to the runs: {NOT_FORWARDED[name]}")
            if not (self.forward_fit_options and is_fit_option(name)):
                self.error(self._unknown_option(name))
            forwarded.append(token)
            expects_value = "=" not in token
        return parsed, forwarded

    def _unknown_option(self, name: str) -> str:
        known = [s for action in self._actions for s in action.option_strings]
        if self.forward_fit_options:
            known += [o for o in FIT_OPTIONS if o.startswith("--")]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unknown option {name}{hint}"


def is_fit_option(name: str) -> bool:
    """Whether ``name`` (``--key`` without its value) is an option of ``escx fit``."""
    if name in FIT_OPTIONS:
        return True
    group = name[2:].split(".", 1)[0] if name.startswith("--") else ""
    return group in FIT_GROUPS


def at_least(value: int, minimum: int, option: str) -> int:
    """``value``, or a one-line CommandError when it is below ``minimum``."""
    if value < minimum:
        raise CommandError(f"{option} must be at least {minimum}, got {value}")
    return value


def check_seeds(seeds: Sequence[int], option: str = "--seeds") -> None:
    """Seeds Lightning accepts (0 to 2**32 - 1), all different."""
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise CommandError(f"{option} must be between 0 and {MAX_SEED}, got {seed}")
    if len(set(seeds)) != len(seeds):
        raise CommandError(f"{option} must differ, got {list(seeds)}")


def device_limit(accelerator: str | None = None) -> tuple[int, str]:
    """How many devices a run may use here, and what they are, in words.

    With ``accelerator`` ``cpu`` (or no GPU) a device is a CPU process, and more processes than
    cores only wait on each other; otherwise Lightning's default picks the GPUs.
    """
    if accelerator != "cpu":
        import torch

        if torch.cuda.is_available():
            count = torch.cuda.device_count()
            return count, f"{count} GPU{'s' if count != 1 else ''}"
    cores = usable_cores()
    return cores, f"{cores} CPU core{'s' if cores != 1 else ''}" + (
        "" if accelerator == "cpu" else " and no GPU"
    )


def check_devices(text: str, option: str = "--devices", accelerator: str | None = None) -> int:
    """A number of devices from 1 to what this machine has; a one-line CommandError otherwise.

    Drivers need a definite count (their reports state the data-parallel budget), so Lightning's
    ``auto`` and ``-1`` ("all") are refused here; name the count.
    """
    limit, what = device_limit(accelerator)
    try:
        count = int(str(text).strip())
    except ValueError:
        count = None
    if count is None or count < 1:
        raise CommandError(
            f"{option} must be a whole number from 1 to {limit} ({what} here), got {text!r}"
        )
    if count > limit:
        raise CommandError(f"{option} {count} is more than this machine has ({what})")
    return count
