"""report.html of ``escx eval``: written through the console script, read back with html.parser
and loaded in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from browser import Browser, find_chromium
from report_pages import parse_report
from tools_fixtures import HAVE_OPUS, SAMPLE_RATE, make_checkpoint, speech_like, write_wav

from escx.evaluation.page import write_page
from escx.evaluation.report import COLUMNS, format_cell
from escx.metrics.models import MODEL_COLUMNS, missing_model_columns

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Samples, in sorted file order. DNSMOS repeats a clip until it lasts 9.01 s, then scores 9 s
# windows at a 1 s hop: these lengths repeat to 9.2-10 s, one window each (a 1 s clip would
# repeat to 16 s, seven windows).
LENGTHS = {"a.wav": 20_000, "b.wav": 18_400, "c.wav": 19_200}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """``escx eval --streams 1,6 --listen 2`` on three clips, run as a user runs it."""
    root = tmp_path_factory.mktemp("eval")
    model = make_checkpoint(root / "small.ckpt")
    for index, (name, length) in enumerate(LENGTHS.items()):
        write_wav(root / "data" / name, speech_like(length, seed=index))
    out = root / "out"
    escx = Path(sys.executable).parent / "escx"
    args = ["eval", "--model", model, "--data", root / "data", "--streams", "1,6"]
    done = subprocess.run(
        [escx, *map(str, args), "-o", str(out), "--listen", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"listening report: {out / 'report.html'}" in done.stdout
    return out / "report.html"


def test_page_shows_every_metric_of_every_bitrate(report):
    page = parse_report(report)
    rows = json.loads((report.parent / "results.json").read_text())["rows"]
    summary = next(t for t in page.tables if t.cls == "summary")
    columns = [c for c in COLUMNS if any(c[0] in row for row in rows)]
    assert summary.header == [header for _, header, _ in columns]
    if not missing_model_columns():  # the eval extra is installed: its columns are shown
        assert {k for k, _, _ in columns} >= set(MODEL_COLUMNS)
    assert len(summary.rows) == len(rows) == 2
    for cells, row in zip(summary.rows, rows, strict=True):
        assert [c["text"] for c in cells] == [format_cell(row.get(k), f) for k, _, f in columns]
    assert [row["kbps"] for row in rows] == [1.5, 9.0]
    plots = {Path(image["src"]).name for image in page.images if "plot" in image.get("class", "")}
    assert plots == {"quality_vs_bitrate.png", "codebook_usage.png"}


def test_players_hold_the_clips_at_every_bitrate(report):
    page = parse_report(report)
    (listen,) = [t for t in page.tables if t.cls == "listen"]
    assert listen.header == ["clip", "original", "1.5 kbps", "9 kbps"]
    assert len(listen.rows) == 2  # --listen 2 of 3 clips; the metrics used all 3
    for (name, length), row in zip(LENGTHS.items(), listen.rows, strict=False):
        assert row[0]["text"].startswith(name)
        source, _ = sf.read(report.parent.parent / "data" / name, dtype="float32")
        for cell in row[1:]:
            (audio,) = cell["audio"]
            (image,) = cell["img"]
            assert "controls" in audio
            played, rate = sf.read(report.parent / audio["src"], dtype="float32")
            assert rate == SAMPLE_RATE and played.shape == (length,)
            assert float(audio["data-seconds"]) == pytest.approx(length / SAMPLE_RATE)
            assert (report.parent / image["src"]).read_bytes()[:8] == PNG_MAGIC
        original, _ = sf.read(report.parent / row[1]["audio"][0]["src"], dtype="float32")
        np.testing.assert_allclose(original, source, atol=1 / 32768)
    srcs = [a["src"] for a in page.audios]
    assert len(srcs) == len(set(srcs)) == 6


def test_page_names_the_columns_the_missing_extra_would_add(tmp_path):
    rows = [{"kbps": 1.5, "pesq": 2.0, "files": 1}]
    html = write_page(tmp_path, "no extra", rows).read_text()
    assert "Not computed: DNSMOS SIG, DNSMOS BAK, DNSMOS OVRL, ViSQOL, speaker sim." in html
    assert "[eval]" in html and "<audio" not in html


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="needs chromium (apt-get install chromium)")
def test_page_plays_in_headless_chromium(report, tmp_path):
    with Browser(tmp_path / "profile") as browser:
        browser.open(report.as_uri())
        ready = browser.wait_for(
            "[...document.querySelectorAll('audio')].every(a => a.readyState >= 1)"
        )
        durations = browser.evaluate(
            "[...document.querySelectorAll('audio')].map(a => [a.src.split('/').pop(), "
            "a.readyState, a.duration])"
        )
        widths = browser.evaluate("[...document.images].map(i => [i.src, i.naturalWidth])")
        shot = browser.screenshot(tmp_path / "report.png")
    assert ready, durations
    assert len(durations) == 6
    for name, state, seconds in durations:
        clip = f"{'abc'[int(name[4:6]) - 1]}.wav"  # clip01-... is a.wav
        assert state >= 1 and seconds == pytest.approx(LENGTHS[clip] / SAMPLE_RATE, abs=1e-3)
    assert len(widths) == 8 and all(width > 0 for _, width in widths), widths
    assert browser.errors == []
    assert shot.read_bytes()[:8] == PNG_MAGIC and shot.stat().st_size > 10_000


def test_demo_evaluation_writes_the_report(tmp_path, capsys):
    from tools_fixtures import SMALL_CODEC_CONFIG

    from escx.config import build_codec
    from escx.demo import evaluate

    clip = write_wav(tmp_path / "val" / "one.wav", speech_like(20_000))
    rows = evaluate(build_codec({"codec": SMALL_CODEC_CONFIG}), [clip], "demo", [1], tmp_path / "r")
    assert [r["kbps"] for r in rows if r["codec"] != "opus"] == [1.5]
    # Opus at 6, 9 and 12 kbps on the same clip beside the codec, where libopus is installed.
    assert [r["kbps"] for r in rows if r["codec"] == "opus"] == ([6, 9, 12] if HAVE_OPUS else [])
    assert "== demo" in capsys.readouterr().out
    page = parse_report(tmp_path / "r" / "report.html")
    listen = [t for t in page.tables if t.cls == "listen"]
    assert listen[0].header == ["clip", "original", "1.5 kbps"]
    # Opus's own table repeats the original beside its three players.
    assert len(page.audios) == (6 if HAVE_OPUS else 2)


def _wide_page(folder: Path) -> Path:
    """A page with a trained codec at six bitrates and five classical-codec columns, 4 clips with
    long file names (written directly: the layout does not depend on what was evaluated)."""
    import torch

    from escx.evaluation.listening import Listening

    listening = Listening(folder, SAMPLE_RATE, clips=4)
    model = listening.bitrates(lambda s: 1.5 * s, grid="esc-base-checkpoint")
    classical = listening.labelled("classical codecs")
    labels = ["opus 6 kbps", "opus 9 kbps", "opus 12 kbps", "codec2 3.2 kbps", "codec2 1.2 kbps"]
    rows = []
    for index in range(4):
        name = f"speaker-{index:03d}_utterance-with-a-long-name-{index}.flac"
        audio = torch.from_numpy(speech_like(8000, seed=index))
        model(index, name, None, audio)
        for streams in range(1, 7):
            model(index, name, streams, audio)
        for label in labels:
            classical(index, name, label, audio)
    for streams in range(1, 7):
        rows.append({"codec": "esc", "kbps": 1.5 * streams, "pesq": 2.0, "dropped": {"pesq": 0}})
    for label in labels:
        codec, kbps, _ = label.split()
        rows.append({"codec": codec, "kbps": float(kbps), "pesq": 2.0, "bandwidth": "narrowband"})
    return write_page(folder, "esc, opus, codec2 on data", rows, "caption", (), listening)


@pytest.mark.browser
@pytest.mark.skipif(find_chromium() is None, reason="needs chromium (apt-get install chromium)")
def test_page_with_classical_codecs_fits_a_1400_pixel_window(tmp_path):
    """Clip names keep a readable column and no player lies beyond the window's edge (they were
    squeezed to one character per line, and the 9 kbps column was cut off)."""
    page = _wide_page(tmp_path / "report")
    with Browser(tmp_path / "profile", width=1400) as browser:
        browser.open(page.as_uri())
        clips = browser.evaluate(
            "[...document.querySelectorAll('th.clip')].map(t => t.getBoundingClientRect().width)"
        )
        players = browser.evaluate(
            "[...document.querySelectorAll('audio')].map(a => a.getBoundingClientRect().right)"
        )
        overflow = browser.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        shot = browser.screenshot(tmp_path / "wide.png")
    assert len(clips) == 2 * 5 and min(clips) >= 100, clips  # 2 tables: header + 4 clips each
    assert len(players) == 4 * (7 + 5) and max(players) <= 1400, players
    assert overflow <= 0 and browser.errors == []
    assert shot.read_bytes()[:8] == PNG_MAGIC
