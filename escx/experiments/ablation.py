"""Ablation studies: train variants with the same budget and seed, evaluate every bitrate,
write one comparison report.

``make ablation-pretrain`` compares ESC with and without the pre-training stage;
``make ablation-quantizer`` the 2 x 2 matrix CS-RVQ or RVQ by Swin or conv;
``make ablation-codebook`` ESC's pre-training against SoundStream/EnCodec's codebook techniques
(k-means initialisation, dead-entry restarts, EMA updates); ``make ablation-codebook-kind`` ESC's
VQ against FSQ, LFQ/BSQ, SimVQ and the rotation trick; ``make ablation-recipe`` ESC's training
recipe against the quick recipe, with quality-against-step curves; ``make ablation-baseline`` ESC
against DAC, the paper's headline comparison (:mod:`escx.experiments.baseline`). Every report
also carries libopus on the same clips. Each runs
``escx fit`` for each variant (so every run is an ordinary, resumable escx run with its config
saved), group the W&B runs under one group, then evaluate each final checkpoint with the same
code as ``escx eval`` and write ``results/<study>/``: results.csv / .json / .md, plots, configs,
and report.html, where the variants are heard side by side on the same clips (one row per clip,
one column per variant, at the lowest and the highest bitrate).

Every variant trains with a recipe (:mod:`escx.experiments.recipes`): ``--recipe`` chooses it,
by default the quick recipe at SCALE=tiny and ESC's at SCALE=base; the recipe study sets its own
per variant. Reports name the recipe and the configs each variant stacked.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from escx.commands.common import CommandError
from escx.experiments.curves import Curves, plot_curves, read_curves, write_curves_csv
from escx.experiments.recipes import (
    config_path,
    default_recipe,
    describe_recipe,
    recipe_configs,
    repo_relative,
)
from escx.experiments.runs import fit_command, run_fit
from escx.experiments.studies import (
    NOTES,
    RECIPE_PRETRAIN_SHARE,
    STUDIES,
    STUDY_KBPS,
    Variant,
    pretrain_steps,
)
from escx.experiments.study_report import study_caption, study_plots

log = logging.getLogger(__name__)

SCALES = {
    "tiny": ["experiments/tiny.yaml"],
    "base": [],
}


def variant_recipe(variant: Variant, args: argparse.Namespace) -> str:
    """The recipe ``variant`` trains with: its own, else ``--recipe``, else the scale's default."""
    return variant.recipe or getattr(args, "recipe", None) or default_recipe(args.scale)


def variant_configs(variant: Variant, args: argparse.Namespace) -> list[str]:
    """Configs ``variant`` stacks, in order: ESC, the scale, the recipe (or, for an arm of
    another family, its own ``models`` configs), ``--config`` extras, the variant's overlays
    (later ones win)."""
    extra = list(getattr(args, "config", None) or [])
    if variant.models is not None:
        model = list(variant.models[args.scale])
    else:
        recipe = recipe_configs(variant_recipe(variant, args))
        model = ["experiments/esc.yaml", *SCALES[args.scale], *recipe]
    return [config_path(c) for c in [*model, *extra, *variant.configs]]


def variant_command(variant: Variant, args: argparse.Namespace, root: Path) -> list[str]:
    """The ``escx fit`` command that trains ``variant`` into ``root``."""
    options = [
        f"--data.train={args.data}/train",
        f"--data.val={args.data}/val",
        f"--trainer.max_steps={args.steps}",
        f"--trainer.devices={args.devices}",
        f"--trainer.default_root_dir={root}",
        f"--seed_everything={args.seed}",
    ]
    if args.scale == "tiny":  # validate once, at the end: the comparison is evaluated afterwards
        options += [
            f"--trainer.val_check_interval={args.steps}",
            "--trainer.num_sanity_val_steps=0",
        ]
    # The variant's options come last, so a study that validates more often (recipe) wins.
    return fit_command(variant_configs(variant, args), *options, *variant.overrides)


def train_variant(
    variant: Variant, args: argparse.Namespace, out: Path, group: str
) -> tuple[Path, Path]:
    """Run ``escx fit`` for one variant; returns (run folder, final checkpoint)."""
    root = out / "runs" / variant.name
    cmd = variant_command(variant, args, root)
    env = {**os.environ, "WANDB_RUN_GROUP": group}
    env.setdefault("WANDB_MODE", "offline")
    log.warning("training %s: %s", variant.name, " ".join(cmd[2:]))
    code = run_fit(cmd, root, variant.name, env)
    if code != 0:
        raise CommandError(f"training {variant.name} failed (exit {code}); see the output above")
    return root, root / "checkpoints" / "last.ckpt"


def study_seeds(args: argparse.Namespace) -> list[int]:
    """The seeds ``args`` asks for: ``args.seeds`` (a list) or the single ``args.seed``."""
    return list(getattr(args, "seeds", None) or [args.seed])


def run_study(args: argparse.Namespace) -> Path:
    """Train and evaluate every variant of ``args.study`` once per seed; returns the results
    folder.

    With one seed the report is written into the folder itself. With several, each seed's study
    is a complete report in ``seed-<seed>/`` (its runs resume there like any study's), and the
    folder gets every seed's rows (results.csv / .json / .md, with a ``seed`` column) and their
    spread (:mod:`escx.experiments.seeds`: summary.csv / .md, quality_spread.png).
    """
    from escx.evaluation.report import write_report
    from escx.experiments.seeds import write_summary

    seeds = study_seeds(args)
    out = Path(args.out or f"results/ablation-{args.study}")
    if len(seeds) == 1:
        run_seed(argparse.Namespace(**{**vars(args), "seed": seeds[0]}), out)
        return out
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        per_seed = argparse.Namespace(**{**vars(args), "seed": seed, "seeds": [seed]})
        document = run_seed(per_seed, out / f"seed-{seed}") / "results.json"
        rows += [{"seed": seed, **row} for row in json.loads(document.read_text())["rows"]]
    caption = study_caption(args, rows, _stacks(args), NOTES.get(args.study, ""))
    title = f"ablation: {args.study}"
    # The seed as text, so the Markdown table shows it as a label column beside the variant.
    labelled = [{**row, "seed": str(row["seed"])} for row in rows]
    write_report(labelled, out, title, caption, plots=False, page=False)
    write_summary(rows, out, title, caption + " Cells: mean over seeds [lowest, highest].")
    return out


def run_seed(args: argparse.Namespace, out: Path) -> Path:
    """Train and evaluate every variant of ``args.study`` with ``args.seed`` into ``out``."""
    import torch

    from escx.api import load_codec
    from escx.audio import find_audio_files
    from escx.evaluation.core import evaluate_codec
    from escx.evaluation.listening import Listening
    from escx.evaluation.page import write_page
    from escx.evaluation.report import write_report
    from escx.experiments.baseline import opus_rows

    variants = STUDIES[args.study](args.steps)
    with_models = not getattr(args, "no_model_metrics", False)
    # The data are checked before ``out`` exists, so bad --data leaves no empty folder behind.
    val_files = find_audio_files(Path(args.data) / "val")[: args.eval_files]
    if not val_files:
        raise CommandError(
            f"no validation audio in {args.data}/val; run `make data` or pass DATA=DIR"
        )
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    (out / "configs").mkdir(exist_ok=True)
    listening = None
    curves: dict[str, Curves] = {}
    for variant in variants:
        root, ckpt = train_variant(variant, args, out, f"ablation-{args.study}")
        shutil.copy(root / "config.yaml", out / "configs" / f"{variant.name}.yaml")
        recipe, configs = variant_recipe(variant, args), variant_configs(variant, args)
        curves[variant.name] = read_curves(root)
        handle = load_codec(ckpt)
        params = sum(p.numel() for p in handle.codec.parameters())
        summary = json.loads((root / "metrics.json").read_text())
        if listening is None:
            listening = Listening(out, handle.sample_rate, getattr(args, "listen", 4))
        streams = study_streams(args.study, handle.codec)
        extremes = sorted({streams[0], streams[-1]})
        listen = listening.variant(variant.name, handle.kbps, extremes)
        torch.manual_seed(args.seed)
        for row in evaluate_codec(
            handle,
            val_files,
            streams,
            progress=True,
            with_models=with_models,
            listen=listen,
            name=variant.name,
        ):
            rows.append({"variant": variant.name, "recipe": recipe, "params": params,
                         "steps": summary.get("batches_seen"), **row,
                         "configs": [repo_relative(c) for c in configs]})  # fmt: skip
    rows += opus_rows(val_files, with_models, _into_existing_grids(listening))
    caption = study_caption(args, rows, _stacks(args), NOTES.get(args.study, ""))
    title = f"ablation: {args.study}"
    write_report(rows, out, title, caption, plots=False, page=False)
    tables = []
    if args.study == "baseline":
        tables = [("The paper's claims beside this run", write_headline(rows, args, out))]
    images = study_plots(rows, out, args.study)
    if any(len(p) > 1 for c in curves.values() for k in c.values() for p in k.values()):
        write_curves_csv(curves, out / "curves.csv")
        switch = pretrain_steps(args.steps, RECIPE_PRETRAIN_SHARE)
        marks = [(switch, "quantizer on")] if args.study == "recipe" else []
        images.insert(0, plot_curves(curves, out / "quality_vs_step.png", title, marks))
    write_page(out, title, rows, caption, images, listening, tables=tables)
    return out


def study_streams(study: str, codec: Any) -> list[int]:
    """The stream counts ``codec`` is evaluated at in ``study``: those of the study's bitrates
    (:data:`STUDY_KBPS`), else all of them."""
    kbps = STUDY_KBPS.get(study)
    if kbps is None:
        return list(range(1, codec.max_streams + 1))
    return [codec.streams_for_kbps(k) for k in kbps]


def _into_existing_grids(listening: Any) -> Any:
    """A recorder for :func:`opus_rows` that adds Opus only to the players' grids the variants
    made (Opus at 9 kbps beside the variants at 9 kbps; no grid of Opus alone)."""
    if listening is None:
        return None

    def record(grid: str, column: str, index: int, name: str, audio: Any) -> None:
        if grid in listening.grids:
            listening.record(grid, column, index, name, audio)

    return record


def write_headline(rows: list[dict[str, Any]], args: argparse.Namespace, out: Path) -> list:
    """The baseline study's claims beside the paper's: measured, written to headline.md and
    returned as page rows."""
    import torch

    from escx.atomic import atomic_path
    from escx.experiments.baseline import headline, headline_markdown, paper_scale_speed

    seconds = getattr(args, "speed_seconds", 10.0)
    speed = paper_scale_speed(seconds) if seconds > 0 else []
    lines = headline(rows, speed, args.scale)
    with atomic_path(out / "headline.md") as tmp:
        tmp.write_text(headline_markdown(lines, torch.get_num_threads()))
    return lines


def _stacks(args: argparse.Namespace) -> dict[str, str]:
    """Per variant of the study, its recipe and the configs it stacks, in words."""
    return {
        variant.name: describe_recipe(variant_recipe(variant, args), variant_configs(variant, args))
        for variant in STUDIES[args.study](args.steps)
    }
