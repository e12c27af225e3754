"""Run a W&B sweep file locally, without a W&B server.

The same ``experiments/sweeps/*.yaml`` works with ``wandb sweep`` + ``wandb agent`` online. Here
the parameter sets are generated locally (grid and random; bayes through W&B's own engine, the
optional ``sweeps`` package), each run is launched with the sweep's ``command`` exactly as the
W&B agent would (``${args}`` -> ``--name=value``), logs to W&B offline, and its final metrics are
read from ``<run dir>/metrics.json``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from escx.config import ConfigError, load_yaml
from escx.experiments.runs import run_fit

METHODS = ("grid", "random", "bayes")


@dataclass
class SweepRun:
    """One run of a sweep: its parameters, outcome and metric."""

    index: int
    params: dict[str, Any]
    root: Path
    returncode: int | None = None
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def load_sweep(path: str | Path) -> dict:
    """Read and validate a W&B sweep config; one-line ConfigError on mistakes."""
    config = load_yaml(path)
    method = config.get("method")
    if method not in METHODS:
        raise ConfigError(f"{path}: method must be one of {', '.join(METHODS)}, got {method!r}")
    params = config.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{path}: `parameters` must map parameter names to their values")
    for name, spec in params.items():
        if not isinstance(spec, dict) or not (
            {"values", "value", "distribution", "min"} & set(spec)
        ):
            raise ConfigError(
                f"{path}: parameter {name!r} needs `values`, `value` or a distribution"
            )
        if method == "grid" and not ({"values", "value"} & set(spec)):
            raise ConfigError(f"{path}: grid search needs `values` for parameter {name!r}")
    metric = config.get("metric") or {}
    if "name" not in metric:
        raise ConfigError(f"{path}: `metric.name` is required (e.g. val/pesq@9kbps)")
    if not isinstance(config.get("command"), list):
        raise ConfigError(f"{path}: `command` must be a list, as W&B sweeps use it")
    return config


def grid(parameters: dict) -> list[dict[str, Any]]:
    """Every combination of the ``values`` lists (``value`` entries are fixed)."""
    names = list(parameters)
    choices = [
        parameters[n]["values"] if "values" in parameters[n] else [parameters[n]["value"]]
        for n in names
    ]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def sample(spec: dict, rng: random.Random) -> Any:
    """Draw one value of a W&B parameter spec."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    low, high = spec["min"], spec["max"]
    kind = spec.get("distribution", "int_uniform" if isinstance(low, int) else "uniform")
    if kind == "int_uniform":
        return rng.randint(int(low), int(high))
    if kind == "uniform":
        return rng.uniform(low, high)
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    if kind == "log_uniform":  # W&B: min/max are natural-log bounds
        return math.exp(rng.uniform(low, high))
    raise ConfigError(
        f"unsupported distribution {kind!r}; use values, uniform, int_uniform, "
        "log_uniform or log_uniform_values"
    )


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
    for item in command:
        if item == "${env}":
            continue
        if item == "${interpreter}":
            out.append(sys.executable)
        elif item == "${program}":
            out.append(program or "")
        elif item == "${args}":
            out.extend(args)
        elif item == "${args_no_hyphens}":
            out.extend([*extra, *(a[2:] for a in args[len(extra) :])])
        else:
            out.append(item)
    if not any(item in ("${args}", "${args_no_hyphens}") for item in command):
        out.extend(extra)
    if out and out[0] == "escx":
        out[:1] = [sys.executable, "-m", "escx.cli"]
    return out


class LocalSweep:
    """Generates and runs the sweep's parameter sets one after the other.

    Args:
        config: a validated sweep config.
        name: sweep name (folder and W&B group).
        out_dir: where run folders and the results table go.
        count: runs to do (grid: at most the grid size; default: the whole grid, or 10).
        seed: random-search seed.
        extra_args: appended to every run's command (e.g. a smaller scale).
    """

    def __init__(
        self,
        config: dict,
        name: str,
        out_dir: Path,
        count: int | None = None,
        seed: int = 0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.config, self.name, self.out_dir = config, name, Path(out_dir)
        self.metric = config["metric"]["name"]
        self.maximize = config["metric"].get("goal", "maximize") == "maximize"
        self.count, self.seed = count, seed
        self.extra_args = list(extra_args or [])
        self.runs: list[SweepRun] = []

    def parameter_sets(self) -> list[dict[str, Any]]:
        method, params = self.config["method"], self.config["parameters"]
        if method == "grid":
            sets = grid(params)
            return sets[: self.count] if self.count else sets
        if method == "random":
            rng = random.Random(self.seed)
            return [{k: sample(v, rng) for k, v in params.items()} for _ in range(self.count or 10)]
        return []  # bayes proposes one run at a time

    def _bayes_next(self) -> dict[str, Any]:
        try:
            import sweeps  # W&B's sweep engine, optional
        except ImportError:
            raise ConfigError(
                "bayes search needs the optional `sweeps` package (pip install 'escx[sweeps]'); "
                "use method grid or random otherwise"
            ) from None
        history = [
            sweeps.SweepRun(
                name=str(r.index),
                state=sweeps.RunState.finished,
                config={k: {"value": v} for k, v in r.params.items()},
                summary_metrics={self.metric: r.metric} if r.metric is not None else {},
            )
            for r in self.runs
        ]
        proposal = sweeps.next_run(sweep_config=self.config, runs=history)
        return {k: v["value"] for k, v in proposal.config.items()}

    def run(self, progress=None) -> list[SweepRun]:
        """Run every parameter set; ``progress(run)`` is called after each."""
        planned = self.parameter_sets()
        total = len(planned) if planned else (self.count or 10)
        for index in range(total):
            params = planned[index] if planned else self._bayes_next()
            run = SweepRun(index, params, self.out_dir / f"run-{index:03d}")
            self._launch(run)
            self.runs.append(run)
            if progress is not None:
                progress(run)
        return self.runs

    def _launch(self, run: SweepRun) -> None:
        cmd = expand_command(
            self.config["command"], run.params, self.config.get("program"), self.extra_args
        )
        cmd += [f"--trainer.default_root_dir={run.root}"]
        env = {**os.environ, "WANDB_RUN_GROUP": self.name}
        env.setdefault("WANDB_MODE", "offline")
        run.root.mkdir(parents=True, exist_ok=True)
        with open(run.root / "output.log", "a") as log:
            # A stopped run (Ctrl-C, SIGTERM) stops the sweep: RunStopped propagates.
            run.returncode = run_fit(cmd, run.root, f"sweep run {run.index + 1}", env, log)
        summary_path = run.root / "metrics.json"
        if summary_path.is_file():
            run.summary = json.loads(summary_path.read_text())
            value = run.summary.get(self.metric)
            run.metric = float(value) if value is not None else None

    def ranked(self) -> list[SweepRun]:
        """Runs best first; failed runs (no metric) last."""
        scored = [r for r in self.runs if r.metric is not None and not math.isnan(r.metric)]
        failed = [r for r in self.runs if r not in scored]
        return sorted(scored, key=lambda r: r.metric, reverse=self.maximize) + failed

    def table(self) -> str:
        """Markdown table of the ranked runs."""
        names = list(self.config["parameters"])
        head = ["rank", *names, self.metric, "status", "run"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rank, run in enumerate(self.ranked(), 1):
            status = "ok" if run.returncode == 0 else f"exit {run.returncode}"
            value = f"{run.metric:.4f}" if run.metric is not None else "n/a"
            cells = [str(rank), *(format_value(run.params.get(n)) for n in names), value, status]
            lines.append("| " + " | ".join([*cells, run.root.name]) + " |")
        return "\n".join(lines)

    def write_results(self) -> Path:
        """results.md and results.json in the sweep folder; returns the Markdown path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        goal = "higher" if self.maximize else "lower"
        md = self.out_dir / "results.md"
        md.write_text(
            f"# Sweep {self.name}\n\nRanked by `{self.metric}` ({goal} is better).\n\n"
            f"{self.table()}\n"
        )
        rows = [
            {
                "index": r.index,
                "params": r.params,
                "metric": r.metric,
                "returncode": r.returncode,
                "root": str(r.root),
            }
            for r in self.ranked()
        ]
        (self.out_dir / "results.json").write_text(json.dumps(rows, indent=2))
        return md
