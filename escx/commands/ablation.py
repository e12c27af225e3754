"""``escx ablation STUDY``: train the variants of a study (pretrain, quantizer, codebook,
codebook-kind, recipe, baseline, causal) and compare them."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from escx.commands.common import CommandError, add_model_metrics_argument, say
from escx.experiments.ablation import SCALES, run_study, variant_command
from escx.experiments.fit_check import check_fit_commands
from escx.experiments.options import DriverParser, at_least, check_devices, check_seeds
from escx.experiments.recipes import RECIPES, default_recipe
from escx.experiments.runs import check_run_folder
from escx.experiments.studies import STUDIES, default_steps


def main(argv: list[str]) -> int:
    parser = DriverParser(
        prog="escx ablation",
        description="Train every variant of a study with the same budget and seed, evaluate all "
        "bitrates, write results/ablation-STUDY/.",
    )
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="training steps per variant (default at --scale tiny: about 30 minutes per study; "
        "4000 for the recipe study, about 90 minutes)",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="tiny")
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=None,
        help="training recipe stacked after the model: quick (experiments/recipes/quick.yaml) "
        "or esc (ESC's own); default quick at --scale tiny, esc at --scale base; the recipe "
        "study trains both",
    )
    parser.add_argument(
        "--devices", default="1", help="training processes or GPUs per variant (default 1)"
    )
    parser.add_argument("--data", default="data", help="folder with train/ and val/")
    parser.add_argument(
        "--seed",
        "--seeds",
        dest="seeds",
        type=int,
        nargs="+",
        default=[53],
        help="seed of every variant (default 53); several train the whole study once per seed "
        "into OUT/seed-SEED/ and summarise the spread in OUT/summary.md",
    )
    parser.add_argument("--eval-files", type=int, default=16, help="validation files evaluated")
    parser.add_argument("--out", default=None, help="default: results/ablation-STUDY")
    parser.add_argument(
        "--listen", type=int, default=4, help="clips with players in report.html (default 4)"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="extra config stacked after the scale and the recipe, before each variant's overlay "
        "(repeatable)",
    )
    parser.add_argument(
        "--speed-seconds",
        type=float,
        default=10.0,
        help="baseline study: seconds of audio ESC-Base and the 18-codebook DAC code (random "
        "weights) for the paper's speed ratio (default 10; 0 skips the measurement)",
    )
    add_model_metrics_argument(parser)
    args = parser.parse_args(argv)
    if args.recipe is None:
        args.recipe = default_recipe(args.scale)
    if args.steps is None:
        args.steps = default_steps(args.study, args.scale, args.recipe)
    try:
        at_least(args.steps, 1, "--steps")
        at_least(args.eval_files, 1, "--eval-files")
        at_least(args.listen, 0, "--listen")
        if not 0 <= args.speed_seconds <= 60:  # a full-size DAC codes 10 s in seconds
            raise CommandError(f"--speed-seconds must lie in [0, 60], got {args.speed_seconds:g}")
        check_seeds(args.seeds)
        args.devices = str(check_devices(args.devices))
    except CommandError as error:
        parser.error(str(error))
    args.seed = args.seeds[0]
    _check_study(args)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    out = run_study(args)
    summary = out / ("summary.md" if len(args.seeds) > 1 else "results.md")
    say(summary.read_text())
    say(f"results: {out}")
    pages = (
        [out / "report.html"]
        if len(args.seeds) == 1
        else [out / f"seed-{seed}" / "report.html" for seed in args.seeds]
    )
    say(f"listening report: {', '.join(map(str, pages))}")
    for page in pages:  # the baseline study's claims beside the paper's, per seed
        if (page.parent / "headline.md").is_file():
            say((page.parent / "headline.md").read_text(), end="")
    return 0


def _check_study(args: argparse.Namespace) -> None:
    """Before anything is trained or created: audio to train on and evaluate, run folders that
    hold no other study's runs, and every variant's ``escx fit`` command (``--config`` extras
    included) parsed once, so that a mistake fails in one line instead of after the first
    variant has trained."""
    from escx.audio import find_audio_files

    if not find_audio_files(Path(args.data) / "val"):
        raise CommandError(
            f"no validation audio in {args.data}/val; run `make data` or pass DATA=DIR"
        )
    if not (Path(args.data) / "train").is_dir():
        raise CommandError(
            f"no training folder {args.data}/train; run `make data` or pass DATA=DIR"
        )
    out = Path(args.out or f"results/ablation-{args.study}")
    variants = STUDIES[args.study](args.steps)
    for seed in args.seeds:
        folder = out if len(args.seeds) == 1 else out / f"seed-{seed}"
        per_seed = argparse.Namespace(**{**vars(args), "seed": seed})
        for variant in variants:
            root = folder / "runs" / variant.name
            check_run_folder(variant_command(variant, per_seed, root), root)
    commands = [variant_command(v, args, out / "runs" / v.name) for v in variants]
    check_fit_commands(commands, [f"variant {v.name}" for v in variants])
