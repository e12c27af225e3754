"""``escx bench --data DIR`` through the installed command: bad input in one line with nothing
written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
