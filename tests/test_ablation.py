"""A two-run ablation at tiny scale on CPU: trains both variants, evaluates, writes the report."""

from __future__ import annotations

import csv
import json

from report_pages import parse_report
from training_helpers import REPO, TINY, write_corpus

from escx.cli import main
from escx.experiments.ablation import pretrain_study, quantizer_study


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


def test_two_run_pretrain_ablation_writes_a_report(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    data = tmp_path / "data"
    write_corpus(data / "train", 4, 0.6, seed=7)
    write_corpus(data / "val", 2, 0.5, seed=8)
    out = tmp_path / "results"
    code = main(["ablation", "pretrain", "--steps", "2", "--data", str(data), "--out", str(out),
                 "--eval-files", "2", "--config", str(TINY), "--no-model-metrics"])  # fmt: skip
    assert code == 0
    with open(out / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert {r["variant"] for r in rows} == {"with-pretraining", "without-pretraining"}
    assert len(rows) == 12  # 2 variants x 6 bitrates
    document = json.loads((out / "results.json").read_text())
    assert "reduced-size ESC" in document["caption"] and "2 training steps" in document["caption"]
    for name in ("results.md", "quality_vs_bitrate.png", "codebook_utilization.png"):
        assert (out / name).is_file()
    configs = sorted(p.name for p in (out / "configs").iterdir())
    assert configs == ["with-pretraining.yaml", "without-pretraining.yaml"]
    assert "pretrain_steps: 0" in (out / "configs" / "without-pretraining.yaml").read_text()
    runs = list((out / "runs").glob("*/wandb/offline-run-*"))
    assert len(runs) == 2  # both W&B runs, grouped as ablation-pretrain
    assert "| variant |" in capsys.readouterr().out
    # The listening page: one table per bitrate (lowest, highest), one row per clip, one column
    # per variant after the original, every player and image on disk.
    page = parse_report(out / "report.html")
    grids = [t for t in page.tables if t.cls == "listen"]
    assert len(grids) == 2
    for grid in grids:
        assert grid.header == ["clip", "original", "with-pretraining", "without-pretraining"]
        assert len(grid.rows) == 2 and all(
            len(cell["audio"]) == 1 for r in grid.rows for cell in r[1:]
        )
    (summary,) = [t for t in page.tables if t.cls == "summary"]
    assert summary.header[0] == "variant" and len(summary.rows) == 12
