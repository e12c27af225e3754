"""``escx sweep FILE [--count N]``: run a W&B sweep file locally and rank its runs."""

from __future__ import annotations

from pathlib import Path

from escx.commands.common import ArgumentParser, CommandError, say
from escx.config import ConfigError
from escx.experiments.sweep import LocalSweep, format_value, load_sweep


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="escx sweep",
        description="Run a W&B sweep config locally (grid, random; bayes with `sweeps`).",
    )
    parser.add_argument("file", type=Path, help="sweep YAML (experiments/sweeps/*.yaml)")
    parser.add_argument("--count", type=int, default=None, help="number of runs")
    parser.add_argument("--name", default=None, help="sweep name (default: the file name)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/sweeps/NAME")
    parser.add_argument("--seed", type=int, default=0, help="random-search seed")
    args, extra = parser.parse_known_args(argv)
    if args.count is not None and args.count < 1:
        raise CommandError("--count must be at least 1")
    try:
        config = load_sweep(args.file)
    except ConfigError as error:
        raise CommandError(str(error)) from None
    name = args.name or args.file.stem
    sweep = LocalSweep(
        config, name, args.out or Path("runs/sweeps") / name, args.count, args.seed, extra
    )

    def report(run) -> None:
        params = ", ".join(f"{k}={format_value(v)}" for k, v in run.params.items())
        value = "n/a" if run.metric is None else f"{run.metric:.4f}"
        say(f"[{run.index + 1}] {params}: {sweep.metric} = {value} (exit {run.returncode})")

    try:
        sweep.run(report)
    except ConfigError as error:
        raise CommandError(str(error)) from None
    path = sweep.write_results()
    say()
    say(sweep.table())
    say(f"\nresults: {path}")
    return 0 if any(r.returncode == 0 for r in sweep.runs) else 1
