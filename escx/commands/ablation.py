"""``escx ablation STUDY``: train the variants of a study (pretrain, quantizer, codebook,
codebook-kind, recipe) and compare them."""

from __future__ import annotations

import logging

from escx.commands.common import ArgumentParser, add_model_metrics_argument, say
from escx.experiments.ablation import SCALES, STUDIES, default_steps, run_study
from escx.experiments.recipes import RECIPES, default_recipe


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
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
    parser.add_argument("--devices", default="1")
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
    add_model_metrics_argument(parser)
    args = parser.parse_args(argv)
    if args.recipe is None:
        args.recipe = default_recipe(args.scale)
    if args.steps is None:
        args.steps = default_steps(args.study, args.scale, args.recipe)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.listen < 0:
        parser.error("--listen must be >= 0")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must differ, got {args.seeds}")
    args.seed = args.seeds[0]
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
    return 0
