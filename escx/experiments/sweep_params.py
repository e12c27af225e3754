"""The parameter sets of a W&B sweep: the grid, random draws, and the sets that try every swept
value once before any run (checked by :mod:`escx.experiments.fit_check`); and how the W&B agent
turns a set into a command line (``${args}`` -> ``--name=value``)."""

from __future__ import annotations

import itertools
import math
import random
import sys
from collections.abc import Iterator
from typing import Any

from escx.config import ConfigError
from escx.experiments.sweep_file import spec_kind

# Parameter sets dry-parsed before the first run (about 0.5 s each); values beyond them are
# checked when their run starts, as W&B's agent would.
MAX_CHECKS = 100


def grid_size(parameters: dict) -> int:
    """Runs in the full grid: the product of the ``values`` list lengths (nothing is built)."""
    return math.prod(len(spec["values"]) if "values" in spec else 1 for spec in parameters.values())


def iter_grid(parameters: dict) -> Iterator[dict[str, Any]]:
    """Every combination of the ``values`` lists (``value`` entries are fixed), lazily."""
    names = list(parameters)
    choices = [
        spec["values"] if "values" in spec else [spec["value"]] for spec in parameters.values()
    ]
    for combo in itertools.product(*choices):
        yield dict(zip(names, combo, strict=True))


def grid(parameters: dict, limit: int | None = None) -> list[dict[str, Any]]:
    """The first ``limit`` combinations of :func:`iter_grid` (all of them without a limit)."""
    return list(itertools.islice(iter_grid(parameters), limit))


def sample(spec: dict, rng: random.Random) -> Any:
    """Draw one value of a W&B parameter spec (checked by :func:`load_sweep`)."""
    kind = spec_kind(spec)
    if kind == "constant":
        return spec["value"]
    if kind == "categorical":
        return rng.choice(spec["values"])
    low, high = spec["min"], spec["max"]
    if kind == "int_uniform":
        return rng.randint(int(low), int(high))
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if kind == "log_uniform":  # W&B: min/max are natural-log bounds
        return math.exp(rng.uniform(low, high))
    raise ConfigError(f"unsupported distribution {kind!r}")


def candidates(spec: dict) -> list[Any]:
    """Values of a parameter that stand for all it may take, for checking before any run:
    every listed value, or both bounds of a distribution as drawn (float or int)."""
    kind = spec_kind(spec)
    if kind == "constant":
        return [spec["value"]]
    if kind == "categorical":
        return list(spec["values"])
    low, high = spec["min"], spec["max"]
    if kind == "int_uniform":
        return [int(low), int(high)]
    if kind == "log_uniform":
        return [math.exp(low), math.exp(high)]
    return [float(low), float(high)]


def check_sets(parameters: dict) -> tuple[list[dict[str, Any]], int]:
    """Parameter sets that try every candidate value of every parameter at least once.

    The first set takes each parameter's first candidate; each further set changes one
    parameter to another of its (distinct) candidates, so a grid of 3 x 3 needs 5 sets, not 9.

    Returns:
        At most :data:`MAX_CHECKS` sets, and how many there were in all.
    """
    options = {name: candidates(spec) for name, spec in parameters.items()}
    base = {name: values[0] for name, values in options.items()}
    sets, seen = [base], {_key(base)}
    for name, values in options.items():
        for value in values[1:]:
            variant = {**base, name: value}
            if _key(variant) not in seen:
                seen.add(_key(variant))
                sets.append(variant)
    return sets[:MAX_CHECKS], len(sets)


def _key(params: dict[str, Any]) -> tuple[str, ...]:
    return tuple(format_value(v) for v in params.values())


def format_value(value: Any) -> str:
    """Render a value as the W&B agent does in ``${args}`` (lists as YAML flow lists)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def expand_command(
    command: list[str],
    params: dict[str, Any],
    program: str | None,
    extra_args: list[str] | None = None,
) -> list[str]:
    """Substitute the W&B macros; ``escx`` runs in this interpreter's environment.

    ``extra_args`` go just before the swept arguments (``${args}``), so a swept value always wins
    over the same option in an extra config (LightningCLI applies arguments left to right).
    """
    extra = list(extra_args or [])
    args = [*extra, *(f"--{k}={format_value(v)}" for k, v in params.items())]
    out: list[str] = []
    for item in map(str, command):  # YAML may give numbers (`--trainer.max_steps, 2`)
        if item == "${env}":
            continue
        if item == "${program}":
            out.append(program or "")
        elif item == "${args}":
            out.extend(args)
        else:
            out.append(item)
    if out and out[0] == "escx":
        out[:1] = [sys.executable, "-m", "escx.cli"]
    return out
