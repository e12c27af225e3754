"""Reading a W&B sweep file, checked whole before any run starts.

The format is W&B's (its sweep config schema): what ``wandb sweep`` refuses is refused here too,
in one line that names the parameter and says how to write it. ``values: "0.5"`` for example is
a string, not a list, so W&B refuses it, and so does escx (it would otherwise iterate the
string's characters). A few things W&B accepts are refused because escx cannot honour them
locally (distributions it does not sample, nested parameters, other programs than ``escx fit``).

The file is bounded before anything is built from it, as every config escx reads
(:mod:`escx.security.limits`): its size, its values with YAML alias expansions counted (a few
lines of nested aliases expand to billions), its nesting.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any

import yaml

from escx.config import ConfigError

METHODS = ("grid", "random", "bayes")
# Top-level keys of W&B's schema; escx uses method, metric, parameters, command, program and
# run_cap, and ignores the others (they steer W&B's server or its launcher).
TOP_KEYS = (
    "method", "metric", "parameters", "command", "program", "run_cap", "name", "description",
    "project", "entity", "apiVersion", "kind", "controller", "job", "image_uri",
    "early_terminate", "scheduler", "metrics",
)  # fmt: skip
METRIC_KEYS = ("name", "goal", "target", "impute", "impute_while_running")
GOALS = ("minimize", "maximize")
# Distributions escx samples, with the bounds W&B requires of each.
BOUNDED = ("uniform", "int_uniform", "log_uniform", "log_uniform_values")
DISTRIBUTIONS = ("categorical", "constant", *BOUNDED)
SPEC_KEYS = ("values", "value", "distribution", "min", "max")
# W&B distributions and keys escx does not implement: refused rather than silently ignored.
UNSUPPORTED = (
    "categorical_w_probabilities", "normal", "log_normal", "q_normal", "q_log_normal",
    "q_uniform", "q_log_uniform", "q_log_uniform_values", "inv_log_uniform",
    "inv_log_uniform_values", "beta", "q_beta",
)  # fmt: skip
# W&B's pattern for parameter names; they become `--NAME=VALUE` options of `escx fit`.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Options the driver sets on every run itself: a swept value would be overridden or conflict.
RESERVED = {
    "trainer.default_root_dir": "the driver puts each run in OUT/run-NNN",
    "ckpt_path": "the driver resumes a stopped run with --ckpt_path last",
    "print_config": "it would print each run's config instead of training it",
}
# W&B's command macros that escx expands (others, like ${args_json}, are refused).
MACROS = ("${env}", "${program}", "${args}")


def read_bounded_yaml(path: str | Path, what: str = "sweep file") -> Any:
    """Parse a YAML file within the bounds every escx config has (escx.security.limits: size,
    values with alias expansions counted, nesting), before anything is built from it.

    Raises:
        ConfigError: one line saying what is wrong with the file.
    """
    from escx.security.limits import SizeLimitError, read_yaml_file

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} not found: {path}")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file")
    try:
        return read_yaml_file(path, what)
    except SizeLimitError as error:
        raise ConfigError(str(error)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text (UTF-8) file") from None
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else "parse error"
        raise ConfigError(f"{path} is not valid YAML: {first}") from None


def _unknown(kind: str, key: Any, known: tuple[str, ...]) -> str:
    """``unknown KIND 'key'`` with a "did you mean" and the valid keys."""
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {key!r}{hint} (valid: {', '.join(known)})"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_sweep(path: str | Path) -> dict:
    """Read a W&B sweep file and check all of it.

    Returns:
        The sweep config, with ``metric.goal`` filled in (W&B's default, ``minimize``).

    Raises:
        ConfigError: one line naming the first mistake and how to fix it.
    """
    config = read_bounded_yaml(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping (method, metric, parameters, command)")
    for key in config:
        if key not in TOP_KEYS:
            raise ConfigError(f"{path}: {_unknown('key', key, TOP_KEYS)}")
    method = config.get("method")
    if method not in METHODS:
        raise ConfigError(f"{path}: method must be one of {', '.join(METHODS)}, got {method!r}")
    config["metric"] = _check_metric(config.get("metric"), path)
    params = config.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{path}: `parameters` must map parameter names to their values")
    for name, spec in params.items():
        check_parameter(name, spec, method, f"{path}: parameter {name!r}")
    check_command(config.get("command"), config.get("program", "escx"), path)
    run_cap = config.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool)
                                or run_cap < 1):  # fmt: skip
        raise ConfigError(f"{path}: run_cap must be a whole number of runs >= 1, got {run_cap!r}")
    return config


def _check_metric(metric: Any, path: str | Path) -> dict:
    if (
        not isinstance(metric, dict)
        or not isinstance(metric.get("name"), str)
        or not metric["name"]
    ):
        raise ConfigError(f"{path}: `metric.name` is required (e.g. val/pesq@9kbps)")
    for key in metric:
        if key not in METRIC_KEYS:
            raise ConfigError(f"{path}: {_unknown('metric key', key, METRIC_KEYS)}")
    goal = metric.setdefault("goal", "minimize")  # W&B's default
    if goal not in GOALS:
        raise ConfigError(f"{path}: metric.goal must be minimize or maximize, got {goal!r}")
    return metric


def check_parameter(name: Any, spec: Any, method: str, where: str) -> None:
    """Check one entry of ``parameters`` as W&B's schema does, for what escx can run.

    Raises:
        ConfigError: ``where``, then what is wrong and how to write it.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"{where}: a parameter name is an escx fit option without its dashes "
            "(letters, digits, _ . -), e.g. model.quantizer_dropout"
        )
    if name in RESERVED:
        raise ConfigError(f"{where} cannot be swept: {RESERVED[name]}")
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{where} must be a mapping with `values: [...]`, `value: X` or a distribution "
            f"with min and max, got {spec!r}"
        )
    if "parameters" in spec:
        raise ConfigError(f"{where}: nested parameters are not supported by escx sweep")
    for key in spec:
        if key not in SPEC_KEYS:
            why = _unknown("key", key, SPEC_KEYS)
            if key in ("probabilities", "mu", "sigma", "q", "a", "b"):
                why = f"{key!r} belongs to a distribution escx sweep does not sample"
            raise ConfigError(f"{where}: {why}")
    kind = spec_kind(spec, where)
    if method == "grid" and kind not in ("categorical", "constant"):
        raise ConfigError(f"{where}: grid search needs `values: [...]` (or `value: X`)")
    if kind == "categorical":
        values = spec.get("values")
        if not isinstance(values, list):
            got = f"the string {values!r}" if isinstance(values, str) else repr(values)
            fix = f"; write values: [{values}]" if isinstance(values, str | int | float) else ""
            raise ConfigError(
                f"{where}: values must be a list (W&B's sweep format), got {got}{fix}"
            )
        if not values:
            raise ConfigError(f"{where}: values is empty; list at least one value")
    elif kind in BOUNDED:
        _check_bounds(spec, kind, where)


def spec_kind(spec: dict, where: str = "parameter") -> str:
    """The distribution ``spec`` asks for, with W&B's defaults; refuses mixed forms."""
    forms = [k for k in ("values", "value") if k in spec] + (
        ["min/max"] if {"min", "max"} & set(spec) else []
    )
    if len(forms) > 1:
        raise ConfigError(
            f"{where}: give one of values, value or min/max, not {' and '.join(forms)}"
        )
    distribution = spec.get("distribution")
    if distribution is None:
        if "values" in spec:
            return "categorical"
        if "value" in spec:
            return "constant"
        if not forms:
            raise ConfigError(
                f"{where} needs `values: [...]`, `value: X` or a distribution with min and max"
            )
        both_int = all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
                       for k in ("min", "max"))  # fmt: skip
        return "int_uniform" if both_int else "uniform"
    if distribution in UNSUPPORTED:
        raise ConfigError(
            f"{where}: distribution {distribution!r} is not supported by escx sweep "
            f"(supported: {', '.join(DISTRIBUTIONS)})"
        )
    if distribution not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: {_unknown('distribution', distribution, DISTRIBUTIONS)}")
    expected = {"categorical": "values", "constant": "value"}.get(distribution, "min/max")
    if forms != [expected]:
        needs = {"values": "`values: [...]`", "value": "`value: X`"}.get(expected, "min and max")
        raise ConfigError(f"{where}: distribution {distribution} needs {needs}")
    return distribution


def _check_bounds(spec: dict, kind: str, where: str) -> None:
    """min and max present, numbers (integers for int_uniform), finite, min <= max."""
    for key in ("min", "max"):
        if key not in spec:
            other = "max" if key == "min" else "min"
            raise ConfigError(f"{where}: {other} needs {key} ({kind} draws between min and max)")
        value = spec[key]
        if not _is_number(value) or not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
        if kind == "int_uniform" and not isinstance(value, int):
            raise ConfigError(
                f"{where}: int_uniform needs whole-number bounds, got {key} {value!r}"
            )
    low, high = spec["min"], spec["max"]
    if low > high:
        raise ConfigError(f"{where}: min {low!r} is above max {high!r}")
    if kind == "log_uniform_values" and low <= 0:
        raise ConfigError(f"{where}: log_uniform_values needs min > 0, got {low!r}")
    if kind == "log_uniform" and max(abs(low), abs(high)) > 700:  # exp() overflows a float
        raise ConfigError(
            f"{where}: log_uniform takes natural-log bounds (|min|, |max| <= 700); for bounds "
            "given as values use log_uniform_values"
        )


def check_command(command: Any, program: Any, path: str | Path) -> None:
    """The command must run ``escx fit`` with the swept ``${args}``.

    A sweep file names the program its runs execute; escx runs only its own ``escx fit`` (whose
    options are checked before any run), so a file cannot make the driver run anything else.
    """
    if not isinstance(command, list) or not command:
        raise ConfigError(f"{path}: `command` must be a list, as W&B sweeps use it")
    if program != "escx":
        raise ConfigError(
            f"{path}: program must be escx (escx sweep runs escx fit), got {program!r}"
        )
    for item in command:
        if not isinstance(item, str) and not _is_number(item):
            raise ConfigError(f"{path}: every command item must be a string, got {item!r}")
        text = str(item)
        if "${" in text and text not in MACROS:
            raise ConfigError(
                f"{path}: command macro {text!r} is not supported (escx sweep expands "
                f"{', '.join(MACROS)})"
            )
    words = [str(item) for item in command if item != "${env}"]
    if words[:2] not in (["escx", "fit"], ["${program}", "fit"]):
        raise ConfigError(
            f"{path}: command must start with `escx fit` (after ${{env}}), got "
            f"{' '.join(words[:2])!r}; escx sweep runs only escx fit"
        )
    if "${args}" not in words:
        raise ConfigError(f"{path}: command must contain ${{args}}, where the swept options go")
