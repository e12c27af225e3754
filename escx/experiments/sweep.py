"""Run a W&B sweep file locally, without a W&B server.

The same ``experiments/sweeps/*.yaml`` works with ``wandb sweep`` + ``wandb agent`` online. Here
the parameter sets are generated locally (grid and random; bayes through W&B's own engine, the
optional ``sweeps`` package), each run is launched with the sweep's ``command`` exactly as the
W&B agent would (``${args}`` -> ``--name=value``), logs to W&B offline, and its final metrics are
read from ``<run dir>/metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from escx.config import ConfigError
from escx.experiments.fit_check import check_fit_commands
from escx.experiments.runs import run_fit
from escx.experiments.sweep_file import load_sweep
from escx.experiments.sweep_params import (
    check_sets,
    expand_command,
    format_value,
    grid,
    grid_size,
    iter_grid,
    sample,
)

__all__ = [
    "LocalSweep",
    "SweepRun",
    "check_sets",
    "expand_command",
    "format_value",
    "grid",
    "load_sweep",
    "sample",
]

# A grid with more runs than this is refused unless --count (or the file's run_cap) says how many
# to run: the largest shipped grid has 9 runs, a run of the tiny model takes minutes and one of
# ESC-Base days, so a larger grid is far more often a mistake (a range typed as values, one
# parameter too many) than a plan. Random and bayes search run 10 unless told otherwise.
MAX_GRID_RUNS = 100
DEFAULT_RUNS = 10


@dataclass
class SweepRun:
    """One run of a sweep: its parameters, outcome and metric."""

    index: int
    params: dict[str, Any]
    root: Path
    returncode: int | None = None
    metric: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def _bayes_engine():
    """W&B's sweep engine (the optional ``sweeps`` package), or a one-line ConfigError."""
    try:
        import sweeps
    except ImportError:
        raise ConfigError(
            "bayes search needs the optional `sweeps` package (pip install 'escx[sweeps]'); "
            "use method grid or random otherwise"
        ) from None
    return sweeps


class LocalSweep:
    """Plans, checks and runs the sweep's parameter sets one after the other.

    Args:
        config: a sweep config checked by :func:`load_sweep`.
        name: sweep name (folder and W&B group).
        out_dir: where run folders and the results table go.
        count: runs to do (grid: at most the grid size; default: the file's ``run_cap``, else
            the whole grid up to :data:`MAX_GRID_RUNS`, or :data:`DEFAULT_RUNS`).
        seed: random-search seed.
        extra_args: ``escx fit`` options added to every run's command (e.g. a smaller scale).
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
        self.maximize = config["metric"].get("goal", "minimize") == "maximize"
        self.count = count if count is not None else config.get("run_cap")
        self.seed = seed
        self.extra_args = list(extra_args or [])
        self.runs: list[SweepRun] = []

    def total(self) -> int:
        """How many runs the sweep does.

        Raises:
            ConfigError: a grid of more than :data:`MAX_GRID_RUNS` runs and no count, or bayes
                search without W&B's engine.
        """
        method, params = self.config["method"], self.config["parameters"]
        if method == "bayes":
            _bayes_engine()
        if method != "grid":
            return self.count or DEFAULT_RUNS
        size = grid_size(params)
        if self.count is None and size > MAX_GRID_RUNS:
            raise ConfigError(
                f"the grid has {size:,} runs, more than {MAX_GRID_RUNS}; pass --count N to run "
                "its first N (or list fewer values)"
            )
        return min(size, self.count or size)

    def parameter_sets(self) -> Iterator[dict[str, Any]]:
        """The planned parameter sets, lazily (none for bayes, which proposes one at a time)."""
        method, params = self.config["method"], self.config["parameters"]
        if method == "grid":
            yield from iter_grid(params)
        elif method == "random":
            rng = random.Random(self.seed)
            while True:
                yield {k: sample(v, rng) for k, v in params.items()}

    def command(self, params: dict[str, Any], root: Path) -> list[str]:
        """The ``escx fit`` command of the run with ``params`` in folder ``root``."""
        cmd = expand_command(
            self.config["command"], params, self.config.get("program"), self.extra_args
        )
        return [*cmd, f"--trainer.default_root_dir={root}"]

    def check(self, env: dict[str, str] | None = None) -> tuple[int, int]:
        """Dry-parse the runs' ``escx fit`` commands with every swept value before any runs.

        Returns:
            (parameter sets checked, parameter sets needed to try every value).

        Raises:
            CommandError: the first command ``escx fit`` would refuse, in one line.
        """
        sets, needed = check_sets(self.config["parameters"])
        commands, labels = [], []
        for params in sets:
            label = "escx fit with " + ", ".join(
                f"{k}={format_value(v)}" for k, v in params.items()
            )
            commands.append(self.command(params, self.out_dir / "run-000"))
            labels.append(label)
        check_fit_commands(commands, labels, env)
        return len(sets), needed

    def _bayes_next(self) -> dict[str, Any]:
        sweeps = _bayes_engine()
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
        for index in range(self.total()):
            params = self._bayes_next() if self.config["method"] == "bayes" else next(planned)
            run = SweepRun(index, params, self.out_dir / f"run-{index:03d}")
            self._launch(run)
            self.runs.append(run)
            if progress is not None:
                progress(run)
        return self.runs

    def _launch(self, run: SweepRun) -> None:
        cmd = self.command(run.params, run.root)
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
