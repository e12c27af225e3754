"""The baseline study (``escx ablation baseline``): ESC against DAC at equal budget, Opus beside
every study, and the paper's three claims beside the run's figures."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import escx
from escx.evaluation.report import table_columns
from escx.experiments import baseline
from escx.experiments.ablation import study_streams, variant_configs
from escx.experiments.recipes import repo_relative
from escx.experiments.studies import STUDIES

ESCX = str(Path(sys.executable).parent / "escx")
SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "speech"


def _args(scale: str) -> argparse.Namespace:
    return argparse.Namespace(scale=scale, recipe=None, config=[], steps=100, seed=53)


def test_the_study_trains_esc_and_a_parameter_matched_dac_at_the_same_bitrates():
    esc, dac = STUDIES["baseline"](100)
    assert (esc.name, dac.name) == ("esc", "dac")
    assert esc.overrides == ["--model.pretrain_steps=25"]  # ESC pre-trains a quarter; DAC none
    tiny = {v.name: escx.build_codec(*variant_configs(v, _args("tiny"))) for v in (esc, dac)}
    counts = {name: sum(p.numel() for p in c.parameters()) for name, c in tiny.items()}
    assert counts == {"esc": 446_266, "dac": 448_384}
    assert study_streams("baseline", tiny["esc"]) == [1, 2, 3, 4, 5, 6]
    assert study_streams("baseline", tiny["dac"]) == [3, 6, 9, 12, 15, 18]
    assert study_streams("pretrain", tiny["dac"]) == list(range(1, 19))
    base = [repo_relative(c) for c in variant_configs(dac, _args("base"))]
    assert base == ["experiments/dac.yaml", "experiments/dac-9kbps.yaml"]


def _row(variant: str, kbps: float, pesq: float, params: int | None, rtf: float) -> dict:
    return {"variant": variant, "codec": variant, "kbps": kbps, "pesq": pesq, "params": params,
            "encode_rtf": rtf}  # fmt: skip


def test_the_headline_puts_the_papers_claims_beside_the_measured_ratios():
    rows = [_row("esc", 9.0, 2.0, 1000, 0.10), _row("dac", 9.0, 1.5, 1000, 0.30),
            _row("esc", 1.5, 1.2, 1000, 0.05), _row("opus", 9.0, 3.1, None, 0.01)]  # fmt: skip
    speed = [
        {"model": "ESC-Base (escx)", "parameters": 100, "encode_s": 0.5, "decode_s": 0.4,
         "seconds": 10.0},
        {"model": "ESC-Base (straightforward PyTorch)", "parameters": 100, "encode_s": 1.0,
         "decode_s": 0.9, "seconds": 10.0},
        {"model": "DAC, 18 codebooks", "parameters": 900, "encode_s": 3.0, "decode_s": 5.0,
         "seconds": 10.0},
    ]  # fmt: skip
    quality, params, speed_line = baseline.headline(rows, speed, "tiny")
    assert quality["paper"].startswith("-0.20 against DAC-Base (4.01 vs 4.21)")
    assert (
        quality["escx"].startswith("+0.50 (reduced-size models") and "Opus 3.10" in quality["escx"]
    )
    assert params["paper"] == "8.86x (74.31 M / 8.39 M)"
    assert params["escx"].startswith("9.00x at full size (900 / 100); 1.00x in this study")
    assert speed_line["paper"] == "about 2x"
    assert speed_line["escx"].startswith("3.00x at full size, both straightforward PyTorch")
    assert "escx's ESC path 0.50 s: 6.00x" in speed_line["escx"]
    assert "3.00x for the study's models" in speed_line["escx"]
    table = baseline.headline_markdown([quality, params, speed_line], threads=2)
    assert table.count("\n| ") == 3 and "2 CPU threads" in table
    # Nothing measured: the cells say so rather than inventing a figure.
    empty = baseline.headline([], [], "base")
    assert [line["escx"] for line in empty] == ["not measured (a variant has no PESQ at 9 kbps)",
                                                "not measured", "not measured"]  # fmt: skip


def test_a_study_table_names_each_codec_once():
    study = [_row("esc", 9.0, 2.0, 1, 0.1), _row("opus", 9.0, 3.0, None, 0.1)]
    assert [key for key, _, _ in table_columns(study)][:1] == ["variant"]
    evaluation = [{"codec": "model", "kbps": 9.0}, {"codec": "opus", "kbps": 9.0}]
    assert [key for key, _, _ in table_columns(evaluation)][:1] == ["codec"]


def test_a_study_without_libopus_still_reports_and_says_why(monkeypatch, caplog):
    import escx.baselines as baselines
    from escx.baselines import BaselineUnavailable

    def missing(name):
        raise BaselineUnavailable("--baseline opus needs libopus: apt-get install libopus0")

    monkeypatch.setattr(baselines, "load_baseline", missing)
    monkeypatch.setattr("escx.evaluation.classical.load_baseline", missing)
    with caplog.at_level(logging.WARNING):
        assert baseline.opus_rows([Path("a.wav")], with_models=False) == []
    assert "no Opus rows in this report" in caplog.text and "libopus0" in caplog.text


def test_a_bad_speed_budget_is_one_line(tmp_path):
    result = subprocess.run(
        [ESCX, "ablation", "baseline", "--speed-seconds", "-1", "--data", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--speed-seconds must lie in [0, 60]" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not SPEECH.is_dir(), reason=f"real speech not found at {SPEECH}")
def test_the_baseline_study_runs_through_the_console_script(tmp_path):
    """One step per codec on real speech, evaluated on one clip: ESC and DAC at the same six
    bitrates, Opus beside them (in the table and among the 9 kbps players), the paper's claims
    beside the measured figures."""
    result = subprocess.run(
        [ESCX, "ablation", "baseline", "--steps", "1", "--eval-files", "1", "--listen", "1",
         "--speed-seconds", "0.5", "--no-model-metrics", "--data", str(SPEECH), "--out", "study"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    study = tmp_path / "study"
    rows = json.loads((study / "results.json").read_text())["rows"]
    kbps = [1.5, 3.0, 4.5, 6.0, 7.5, 9.0]
    assert [r["kbps"] for r in rows if r["variant"] == "esc"] == kbps
    assert [r["kbps"] for r in rows if r["variant"] == "dac"] == kbps
    assert [r["streams"] for r in rows if r["variant"] == "dac"] == [3, 6, 9, 12, 15, 18]
    assert {r["params"] for r in rows if r["variant"] in ("esc", "dac")} == {446_266, 448_384}
    headline = (study / "headline.md").read_text()
    assert headline.count("\n| ") == 3 and "about 2x" in headline and "8.86x" in headline
    assert headline in result.stdout
    page = (study / "report.html").read_text()
    assert "The paper&#x27;s claims beside this run" in page
    opus = [r for r in rows if r["variant"] == "opus"]
    if opus:  # libopus installed (CI installs it)
        assert [r["kbps"] for r in opus] == [6.0, 9.0, 12.0]
        assert abs(opus[1]["kbps_measured"] - 9.2) < 0.1
        assert list((study / "audio").glob("clip01-9-kbps-opus.wav"))
        assert "Opus" in headline
