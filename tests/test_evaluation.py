"""Per-bitrate evaluation (escx.evaluation): rows, report files and plots."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from tools_fixtures import SMALL_CODEC_CONFIG, make_checkpoint, speech_like

from escx.api import load_codec
from escx.config import build_codec
from escx.evaluation import evaluate_codec, markdown_table, parse_streams, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    handle = load_codec(make_checkpoint(tmp_path_factory.mktemp("model") / "small.ckpt"))
    clips = [torch.from_numpy(speech_like(n, seed=n)) for n in (8000, 11_000)]
    # The model-based columns are checked in test_listening_report; they would triple this time.
    return evaluate_codec(handle, clips, streams=[1, 2, 6], with_models=False)


def test_parse_streams():
    assert parse_streams("1-6", 6) == [1, 2, 3, 4, 5, 6]
    assert parse_streams("6,1, 3", 6) == [1, 3, 6]
    assert parse_streams("2-3,5", 6) == [2, 3, 5]
    assert parse_streams(None, 4) == [1, 2, 3, 4]
    assert parse_streams([3, 3, 1], 6) == [1, 3]
    for bad in ("0-2", "7", "x", "", "1-"):
        with pytest.raises(ValueError, match="stream counts"):
            parse_streams(bad, 6)


def test_rows_hold_every_measurement(rows):
    assert [r["streams"] for r in rows] == [1, 2, 6]
    assert [r["kbps"] for r in rows] == [1.5, 3.0, 9.0]
    for row in rows:
        assert row["files"] == 2 and row["seconds"] == pytest.approx(19_000 / 16000)
        # Real .escx sizes: above nominal by the 40-byte header, CRCs and frame padding, which
        # weigh a lot on 0.5 s clips: 40 + 4 * streams bytes per clip, 2 clips in 1.19 s.
        overhead = 8 * 2 * (40 + 4 * row["streams"]) / row["seconds"] / 1000
        assert row["kbps"] < row["kbps_measured"] < row["kbps"] * 1.05 + overhead
        assert row["codec"] == "small"  # the checkpoint's name
        assert 1.0 <= row["pesq"] <= 4.7 and -1.0 <= row["stoi"] <= 1.0  # random weights
        assert -1.0 <= row["estoi"] <= 1.0
        assert math.isfinite(row["sisdr"]) and row["mel_distance"] > 0
        # Every metric is a mean over the same clips; none could be dropped here.
        assert row["clips_scored"] == 2
        assert row["dropped"] == dict.fromkeys(
            ["pesq", "mel_distance", "sisdr", "stoi", "estoi"], 0
        )
        assert 0.0 < row["bitrate_utilization"] <= 1.0 and 0.0 < row["codebook_usage"] <= 1.0
        grid = row["codebook_utilization"]
        assert len(grid) == row["streams"] and all(len(g) == 3 for g in grid)
        assert row["bitrate_utilization"] == pytest.approx(
            sum(map(sum, grid)) / (3 * row["streams"]), abs=1e-5
        )
        assert row["encode_rtf"] > 0 and row["decode_rtf"] > 0


def test_stream_prefix_utilisation_is_consistent(rows):
    # The s-stream grid is the first s rows of the 6-stream grid (same codes for CS-RVQ prefixes).
    assert rows[0]["codebook_utilization"] == rows[2]["codebook_utilization"][:1]


def test_write_report(tmp_path, rows):
    extra = [*rows, {**rows[-1], "streams": 7, "pesq": float("nan"), "kbps": 10.5}]
    paths = write_report(extra, tmp_path / "report", "small codec", caption="on synthetic clips")
    assert set(paths) == {"csv", "json", "md", "quality_plot", "usage_plot", "html"}
    document = json.loads(paths["json"].read_text())
    assert document["title"] == "small codec" and document["rows"][-1]["pesq"] is None
    with paths["csv"].open() as file:
        table = list(csv.DictReader(file))
    assert [int(r["streams"]) for r in table] == [1, 2, 6, 7]
    assert "codebook_utilization" not in table[0]  # nested values only in the JSON
    assert table[0]["dropped_pesq"] == "0" and table[0]["clips_scored"] == "2"
    assert document["rows"][0]["dropped"]["stoi"] == 0
    markdown = paths["md"].read_text()
    assert markdown.startswith("# small codec") and "*on synthetic clips*" in markdown
    assert "| n/a |" in markdown and markdown.count("\n| ") == 5  # header + 4 bitrates
    for key in ("quality_plot", "usage_plot"):
        assert paths[key].read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in paths["md"].parent.iterdir() if p.name.startswith(".")]


def test_markdown_table_formats_missing_values():
    table = markdown_table([{"kbps": 1.5, "pesq": None, "stoi": 0.91234}])
    assert table.splitlines()[2] == "| 1.5 | n/a | 0.912 |"
    table = markdown_table([{"variant": "rvq-conv", "kbps": 9.0, "pesq": 2.5}])
    assert table.splitlines()[0].startswith("| variant | kbps |")
    assert table.splitlines()[2] == "| rvq-conv | 9 | 2.500 |"
    # The codec is a label column only when rows hold several; dropped clips read per metric.
    rows = [
        {"codec": "esc", "kbps": 9.0, "dropped": {"pesq": 0, "stoi": 0}},
        {"codec": "opus", "kbps": 9.0, "bandwidth": "narrowband", "dropped": {"pesq": 1}},
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| codec | kbps | audio band | dropped (per metric) |"
    assert lines[2:] == ["| esc | 9 | n/a | none |", "| opus | 9 | narrowband | pesq 1 |"]
    assert markdown_table(rows[:1]).splitlines()[0] == "| kbps | dropped (per metric) |"


def test_bare_codec_and_bad_input():
    codec = build_codec({"codec": SMALL_CODEC_CONFIG})
    clip = torch.from_numpy(speech_like(4000))
    (row,) = evaluate_codec(codec, [clip], [2], with_stoi=False, with_models=False)
    assert "dnsmos_ovrl" not in row and "visqol" not in row
    assert row["streams"] == 2 and row["stoi"] is None and row["pesq"] is not None
    with pytest.raises(ValueError, match="no files"):
        evaluate_codec(codec, [], streams=[1])
    with pytest.raises(ValueError, match="shape"):
        evaluate_codec(codec, [torch.zeros(2, 100)], streams=[1])
