"""``escx bench --data DIR`` through the installed command: bad input in one line with nothing
written; (slow) a whole run on a few files reports every loader case beside the training step
and the workers each step rate needs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_index import write_numbered
from training_helpers import ESC, TINY

ESCX = str(Path(sys.executable).parent / "escx")
ENV = {**os.environ, "WANDB_MODE": "disabled"}


def _bench(cwd: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    (cwd / "tmp").mkdir()  # the bench's temporary samples go here, to be checked afterwards
    env = {**ENV, "TMPDIR": str(cwd / "tmp")}
    return subprocess.run([ESCX, "bench", *args, "-o", "out"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


SLOW = pytest.mark.slow  # ~5 s each on 2 busy cores: three cases in the fast suite
BAD = [
    pytest.param(["--data", "nowhere"], "--data nowhere: no such folder of audio", id="no folder"),
    pytest.param(["--data", "empty"], "--data empty: no usable audio files", id="no audio"),
    pytest.param(["--data", "junk", "--data-workers", "0"], "--data-workers 0: give counts",
                 id="no workers"),
    pytest.param(["--data", "junk"], "--data junk: no usable audio files", id="unreadable audio",
                 marks=SLOW),
    pytest.param(["--data", "junk", "--data-workers", "100000"],
                 "--data-workers 100000: this machine lets escx use", id="too many workers",
                 marks=SLOW),
    pytest.param(["--data", "junk", "--data-files", "0"], "--data-files must be >= 1",
                 id="no files", marks=SLOW),
    pytest.param(["--data", "junk", "--step-rate", "0"], "--step-rate must be positive",
                 id="step rate", marks=SLOW),
]  # fmt: skip


@pytest.mark.parametrize("args, words", BAD)
def test_bad_data_bench_input_is_one_line_and_writes_nothing(tmp_path, args, words):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    result = _bench(tmp_path, *args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx: error: ") and words in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "junk", "tmp"]  # no report


@pytest.mark.slow
def test_data_bench_reports_every_loader_case_beside_the_training_step(tmp_path):
    write_numbered(tmp_path / "corpus", 6, seconds=3.5)
    result = _bench(
        tmp_path, "--data", "corpus", "--data-files", "4", "--data-batches", "2",
        "--data-workers", "1", "2", "--train-batch", "2", "--train-repeats", "1",
        "--config", str(ESC), "--config", str(TINY), "--device", "cpu", "--step-rate", "50",
        timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "data.json").read_text())
    assert report["files"] == 4 and report["batch"] == 2 and report["crop_seconds"] == 3.0
    cases = {(row["source"], row["workers"]) for row in report["loaders"]}
    sources = ["folder FLAC", "shards FLAC", "folder WAV", "shards WAV"]
    assert cases == {(s, w) for s in sources for w in (1, 2)}
    assert all(row["clips_per_s"] > 0 for row in report["loaders"])
    steps = {(row["device"], row["precision"]) for row in report["training"]}
    assert steps == {("cpu", "fp32"), ("cpu", "bf16")}
    text = (tmp_path / "out" / "data.md").read_text()
    assert text.strip() in result.stdout
    per_worker = {row["source"]: row["clips_per_s"] for row in report["loaders"]
                  if row["workers"] == 1}  # fmt: skip
    asked = next(line for line in text.splitlines() if line.startswith("| 50 steps/s"))
    needed = [max(1, math.ceil(100 / per_worker[s])) for s in sources]  # 50 steps/s x batch 2
    assert asked.split("|")[3:-1] == [f" {n} " for n in needed]
    assert not list((tmp_path / "tmp").glob("escx-bench-data-*"))  # the samples are removed
