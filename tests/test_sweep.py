"""Local W&B sweeps: parameter generation, command expansion and a real two-run sweep."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import yaml
from report_pages import parse_report
from training_helpers import REPO, TINY, write_corpus

from escx.cli import main
from escx.config import ConfigError
from escx.experiments.sweep import expand_command, grid, load_sweep, sample
from escx.training.naming import run_identity

SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_shipped_sweeps_are_valid_wandb_sweep_files(path):
    config = load_sweep(path)
    assert "${args}" in config["command"] and config["program"] == "escx"
    assert config["method"] in ("grid", "random")


def test_sweep_files_cover_the_required_studies():
    names = {tuple(load_sweep(p)["parameters"]) for p in SWEEPS}
    flat = {name for combo in names for name in combo}
    assert "model.optimizer.init_args.lr" in flat and "model.quantizer_dropout" in flat
    assert "model.codec.init_args.quantizer.init_args.codebook_dims" in flat
    assert "model.pretrain_steps" in flat


def test_grid_and_random_generation():
    params = {"a": {"values": [1, 2]}, "b": {"values": ["x", "y", "z"]}, "c": {"value": 0}}
    combos = grid(params)
    assert len(combos) == 6 and {"a": 2, "b": "z", "c": 0} in combos
    rng = random.Random(0)
    draws = [sample({"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}, rng)
             for _ in range(200)]  # fmt: skip
    assert all(1e-4 <= d <= 1e-2 for d in draws)
    assert sample({"min": 1, "max": 3}, rng) in (1, 2, 3)


def test_command_expansion_matches_the_wandb_agent():
    cmd = expand_command(
        ["${env}", "escx", "fit", "--config", "x.yaml", "${args}"],
        {
            "model.pretrain_steps": 0,
            "model.codec.init_args.quantizer.init_args.codebook_dims": [4, 8],
        },
        "escx",
    )
    assert cmd[:3] == [sys.executable, "-m", "escx.cli"]
    assert cmd[-2:] == [
        "--model.pretrain_steps=0",
        "--model.codec.init_args.quantizer.init_args.codebook_dims=[4, 8]",
    ]


def test_bad_sweep_file_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: sideways\nparameters: {a: {values: [1]}}\ncommand: [escx]\n")
    with pytest.raises(ConfigError):
        load_sweep(bad)
    assert main(["sweep", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "method must be one of" in err


def test_run_names_come_from_the_composition():
    codec = {"class_path": "STFTCodec",
             "init_args": {"encoder": {"class_path": "escx.backbones.conv.ConvEncoder"},
                           "quantizer": {"class_path": "ResidualVQ"}}}  # fmt: skip
    name, tags = run_identity(codec, ["fit", "--config", "a/esc.yaml", "--model.pretrain_steps=0"])
    assert name == "conv-rvq_pretrain_steps=0"
    assert {"conv", "rvq", "esc", "pretrain_steps=0"} <= set(tags)


@pytest.mark.slow  # a minute or more of training through the console script
def test_two_run_sweep_runs_and_ranks(tmp_path, monkeypatch, capsys):
    """`escx sweep FILE --config EXTRA --data.batch_size 3`: both runs train, rank and log to W&B;
    the extra config and options apply to every run, but a swept value wins over the same option
    in the extra config."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    train = write_corpus(tmp_path / "train", 4, 0.6, seed=5)
    val = write_corpus(tmp_path / "val", 2, 0.5, seed=6)
    sweep = tmp_path / "tiny-sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "program": "escx", "method": "grid",
        "metric": {"name": "val/mel_distance@9kbps", "goal": "minimize"},
        "parameters": {"model.quantizer_dropout": {"values": [0.0, 1.0]}},
        "command": ["${env}", "escx", "fit", "--config", "experiments/esc.yaml",
                    "--config", str(TINY), "--data.train", str(train), "--data.val", str(val),
                    "--trainer.max_steps", "2", "--model.pretrain_steps", "1", "${args}"],
    }))  # fmt: skip
    extra = tmp_path / "extra.yaml"  # sets the swept option too
    extra.write_text(yaml.safe_dump({"model": {"quantizer_dropout": 0.5}}))
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--no-model-metrics",
                 "--config", str(extra), "--data.batch_size", "3"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "| rank |" in printed and "val/mel_distance@9kbps" in printed
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 2 and all(r["returncode"] == 0 for r in rows)
    assert rows[0]["metric"] <= rows[1]["metric"]  # minimise: best first
    assert sorted(r["params"]["model.quantizer_dropout"] for r in rows) == [0.0, 1.0]
    for row in rows:
        root = Path(row["root"])
        assert list(root.glob("wandb/offline-run-*/run-*.wandb"))  # W&B offline, grouped
        saved = yaml.safe_load((root / "config.yaml").read_text())
        value = row["params"]["model.quantizer_dropout"]
        assert saved["model"]["quantizer_dropout"] == value  # the swept value, not EXTRA's 0.5
        assert saved["data"]["batch_size"] == 3  # the extra option applies too
        command = (root / "command.txt").read_text()
        assert command.index("extra.yaml") < command.index(f"--model.quantizer_dropout={value}")
    # Listening page: the runs side by side on the validation clips, best run first.
    assert f"listening report: {out / 'report.html'}" in printed
    page = parse_report(out / "report.html")
    (grid,) = [t for t in page.tables if t.cls == "listen"]
    assert grid.header == ["clip", "original", *(Path(r["root"]).name for r in rows)]
    assert len(grid.rows) == 2 and len(page.audios) == 2 * 3
