"""``escx sweep FILE [--count N]``: run a W&B sweep file locally and rank its runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from escx.commands.common import CommandError, add_model_metrics_argument, say
from escx.config import ConfigError
from escx.experiments.options import DriverParser, at_least
from escx.experiments.sweep import (
    DEFAULT_RUNS,
    MAX_GRID_RUNS,
    LocalSweep,
    format_value,
    load_sweep,
)


def main(argv: list[str]) -> int:
    parser = DriverParser(
        prog="escx sweep",
        description="Run a W&B sweep config locally (grid, random; bayes with `sweeps`). "
        "escx fit options after FILE are added to every run.",
        forward_fit_options=True,
    )
    parser.add_argument("file", type=Path, help="sweep YAML (experiments/sweeps/*.yaml)")
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help=f"number of runs (default: the file's run_cap, else the whole grid up to "
        f"{MAX_GRID_RUNS} runs, or {DEFAULT_RUNS} random draws)",
    )
    parser.add_argument("--name", default=None, help="sweep name (default: the file name)")
    parser.add_argument("--out", type=Path, default=None, help="default: runs/sweeps/NAME")
    parser.add_argument("--seed", type=int, default=0, help="random-search seed")
    parser.add_argument(
        "--listen", type=int, default=4, help="clips with players in report.html (0: no page)"
    )
    parser.add_argument(
        "--listen-data",
        type=Path,
        default=None,
        help="clips for report.html (default: the runs' validation folder)",
    )
    parser.add_argument("--eval-files", type=int, default=8, help="clips evaluated for the page")
    add_model_metrics_argument(parser)
    args, extra = parser.parse_with_fit_options(argv)
    try:
        _check_options(args, argv, extra)
    except CommandError as error:
        parser.error(str(error))
    try:
        config = load_sweep(args.file)
        name = args.name or args.file.stem
        sweep = LocalSweep(
            config, name, args.out or Path("runs/sweeps") / name, args.count, args.seed, extra
        )
        sweep.total()  # refuses a grid too large to run before anything is checked or created
    except ConfigError as error:
        raise CommandError(str(error)) from None
    checked, needed = sweep.check()
    if checked < needed:
        say(f"checked {checked} of {needed} swept settings before starting; the others are "
            "checked as their runs start")  # fmt: skip

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
    if args.listen > 0:
        page = _listening_page(sweep, args)
        if page is not None:
            say(f"listening report: {page}")
    return 0 if any(r.returncode == 0 for r in sweep.runs) else 1


def _check_options(args: argparse.Namespace, argv: list[str], extra: list[str]) -> None:
    """The driver's own options, before the file is read (one-line CommandError)."""
    if args.count is not None:
        at_least(args.count, 1, "--count")
    at_least(args.eval_files, 1, "--eval-files")
    at_least(args.listen, 0, "--listen")
    if args.name is not None and (args.name in ("", ".", "..") or "/" in args.name):
        raise CommandError(f"--name must be a plain folder name, got {args.name!r}")
    if args.listen_data is not None and not args.listen_data.is_dir():
        raise CommandError(f"--listen-data {args.listen_data} is not a folder")
    # argparse takes the first free word as FILE, even the value of an escx fit option.
    position = argv.index(str(args.file)) if str(args.file) in argv else 0
    if position and argv[position - 1] in extra and "=" not in argv[position - 1]:
        raise CommandError(
            f"{argv[position - 1]} {args.file}: put escx fit options after the sweep file "
            "(escx sweep FILE --config X ...)"
        )


def _listening_page(sweep: LocalSweep, args) -> Path | None:
    """report.html comparing the finished runs on the same clips (None when nothing to compare)."""
    from escx.audio import find_audio_files
    from escx.experiments.compare import compare_runs, run_data

    done = [r for r in sweep.ranked() if (r.root / "checkpoints" / "last.ckpt").is_file()]
    data = args.listen_data or next(filter(None, (run_data(r.root) for r in done)), None)
    if not done or data is None:
        say("no listening report: no finished run or no clips (pass --listen-data DIR)")
        return None
    files = find_audio_files(data)[: args.eval_files]
    if not files:
        say(f"no listening report: no audio files under {data}")
        return None
    runs = [(r.root.name, r.root / "checkpoints" / "last.ckpt") for r in done]
    caption = (
        f"Sweep {sweep.name}, runs ranked by {sweep.metric}, each at its highest bitrate on the "
        f"first {len(files)} files of {data}."
    )
    return compare_runs(
        runs,
        files,
        sweep.out_dir,
        f"sweep: {sweep.name}",
        caption,
        args.listen,
        with_models=not args.no_model_metrics,
    )
