"""Ablation studies: the variants each study compares, the configs each variant stacks (recipe
by scale), seeds and captions. A real study that trains, evaluates and writes its report runs
through the console script in test_cli_runs.py."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import pytest
from training_helpers import REPO

from escx.cli import main
from escx.experiments.ablation import variant_command
from escx.experiments.studies import pretrain_study, quantizer_study, recipe_study


def test_studies_compare_the_right_variants():
    names = [v.name for v in pretrain_study(100)]
    assert names == ["with-pretraining", "without-pretraining"]
    assert pretrain_study(100)[0].overrides == ["--model.pretrain_steps=10"]
    assert pretrain_study(100)[1].overrides == ["--model.pretrain_steps=0"]
    assert [v.name for v in quantizer_study(100)] == [
        "csrvq-swin", "rvq-swin", "csrvq-conv", "rvq-conv",
    ]  # fmt: skip
    for variant in quantizer_study(100):
        assert all((REPO / c).is_file() for c in variant.configs)


def _args(**options) -> argparse.Namespace:
    defaults = {"scale": "tiny", "recipe": None, "config": [], "data": "data", "steps": 100,
                "devices": "1", "seed": 53}  # fmt: skip
    return argparse.Namespace(**{**defaults, **options})


def _configs(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--config"]


QUICK = str(REPO / "experiments" / "recipes" / "quick.yaml")


@pytest.mark.parametrize(
    ("scale", "recipe", "stacked"),
    [("tiny", None, True), ("base", None, False), ("tiny", "esc", False), ("base", "quick", True)],
)
def test_the_quick_recipe_is_stacked_at_tiny_and_not_at_base(
    scale, recipe, stacked, tmp_path, monkeypatch
):
    """The composed `escx fit` command, without training: the recipe follows the scale's model
    and comes before --config extras and the variant's overlays; run from another folder, the
    configs are found in the source checkout."""
    monkeypatch.chdir(tmp_path)
    args = _args(scale=scale, recipe=recipe, config=["extra.yaml"])
    (variant,) = [v for v in quantizer_study(100) if v.name == "rvq-conv"]
    configs = _configs(variant_command(variant, args, tmp_path))
    names = [Path(c).name for c in configs]
    tiny = ["tiny.yaml"] if scale == "tiny" else []
    quick = ["quick.yaml"] if stacked else []
    assert names == ["esc.yaml", *tiny, *quick, "extra.yaml", "rvq-conv.yaml"]
    assert (QUICK in configs) == stacked


def test_escx_ablation_chooses_the_recipe_by_scale(monkeypatch, tmp_path):
    import escx.commands.ablation as command

    seen = []
    monkeypatch.setattr(command, "run_study", lambda args: seen.append(args.recipe) or tmp_path)
    monkeypatch.setattr(command, "_check_study", lambda args: None)  # no data, no fit to check
    (tmp_path / "results.md").write_text("table")
    for extra in ([], ["--scale", "base"], ["--recipe", "esc"]):
        assert main(["ablation", "pretrain", "--steps", "1", *extra]) == 0
    assert seen == ["quick", "esc", "esc"]


def test_the_recipe_study_differs_only_in_the_recipe():
    esc, quick = recipe_study(100)
    assert (esc.name, esc.recipe, quick.name, quick.recipe) == ("esc", "esc", "quick", "quick")
    assert esc.configs == quick.configs and esc.overrides == quick.overrides
    assert "--model.pretrain_steps=25" in esc.overrides  # a quarter, as in docs/recipes.md
    assert "--trainer.val_check_interval=20" in esc.overrides  # five points per curve


def _fake_study(trained: list):
    """Stands in for one seed's training and evaluation: writes the report run_seed writes, with
    PESQ that depends on the seed and the variant."""
    from escx.evaluation.report import write_report

    def run_seed(args, out):
        trained.append((args.seed, out))
        rows = [
            {"variant": variant, "recipe": "quick", "kbps": kbps, "pesq": pesq + args.seed / 100,
             "stoi": 0.7, "sisdr": -3.0, "mel_distance": 5.0, "bitrate_utilization": 0.5,
             "params": 1000, "files": 2}
            for variant, pesq in (("with-pretraining", 1.2), ("without-pretraining", 1.1))
            for kbps in (1.5, 9.0)
        ]  # fmt: skip
        out.mkdir(parents=True)
        write_report(rows, out, "ablation", f"tiny; seed {args.seed}, data d", page=False)
        return out

    return run_seed


def _no_study_checks(monkeypatch) -> None:
    """The studies below are faked: no data to find, no escx fit commands to check."""
    import escx.commands.ablation as command

    monkeypatch.setattr(command, "_check_study", lambda args: None)


def test_several_seeds_train_the_study_once_per_seed_and_summarise_the_spread(
    tmp_path, monkeypatch, capsys
):
    import escx.experiments.ablation as ablation

    trained = []
    monkeypatch.setattr(ablation, "run_seed", _fake_study(trained))
    _no_study_checks(monkeypatch)
    out = tmp_path / "results"
    argv = ["ablation", "pretrain", "--steps", "1", "--seeds", "53", "54", "--out", str(out)]
    assert main(argv) == 0
    assert trained == [(53, out / "seed-53"), (54, out / "seed-54")]
    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [r["seed"] for r in rows] == ["53"] * 4 + ["54"] * 4
    with open(out / "summary.csv") as file:
        summary = {(r["variant"], r["kbps"]): r for r in csv.DictReader(file)}
    row = summary[("with-pretraining", "9.0")]
    assert row["seeds"] == "53 54"
    assert float(row["pesq"]) == pytest.approx(1.2 + 0.535)
    assert (float(row["pesq_min"]), float(row["pesq_max"])) == pytest.approx((1.73, 1.74))
    table = (out / "summary.md").read_text()
    assert "| with-pretraining | 9 | 2 | 1.735 [1.730, 1.740] |" in table
    assert "seeds 53, 54" in table and "seed 54" not in table
    assert "1 training step per variant, seeds" in table  # one device: nothing to add
    assert (out / "quality_spread.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "1.735 [1.730, 1.740]" in printed and str(out / "seed-54" / "report.html") in printed


def test_one_seed_writes_the_study_into_its_folder_and_equal_seeds_are_refused(
    tmp_path, monkeypatch, capsys
):
    import escx.experiments.ablation as ablation

    trained = []
    monkeypatch.setattr(ablation, "run_seed", _fake_study(trained))
    _no_study_checks(monkeypatch)
    out = tmp_path / "results"
    assert main(["ablation", "pretrain", "--steps", "1", "--seed", "7", "--out", str(out)]) == 0
    assert trained == [(7, out)] and not (out / "summary.md").exists()
    with pytest.raises(SystemExit) as stop:
        main(["ablation", "pretrain", "--seeds", "53", "53", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2 and "--seeds must differ" in capsys.readouterr().err
    assert len(trained) == 1


def test_the_caption_names_a_data_parallel_budget(tmp_path, monkeypatch):
    """With --devices N a step trains on one batch per device, so the caption says so."""
    import escx.experiments.ablation as ablation

    trained = []
    monkeypatch.setattr(ablation, "run_seed", _fake_study(trained))
    _no_study_checks(monkeypatch)
    out = tmp_path / "two"
    argv = ["ablation", "pretrain", "--steps", "1", "--seeds", "7", "8", "--devices", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    assert (
        "1 training step per variant on --devices 2 (data-parallel), seeds 7, 8"
        in (out / "summary.md").read_text()
    )
