"""`escx eval -o OUT` writes a report whole or not at all, through the real console script.

A failure, SIGTERM or full disk leaves OUT as it was (an earlier report byte for byte, or no folder
at all) and no staging folder beside it; report folders that would lose a user's files or the data
are refused in one line before anything runs; a successful run replaces an earlier report whole.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tools_fixtures import make_checkpoint, speech_like, write_wav

ESCX = str(Path(sys.executable).parent / "escx")
MODULE = [sys.executable, "-m", "escx.cli"]
FAST = ["--streams", "1", "--no-stoi", "--no-model-metrics"]
ENV = {**os.environ, "WANDB_MODE": "disabled"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) by relative path, with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _run(args: list, cwd: Path, launcher: list | None = None, **options) -> Any:
    command = [*(launcher or [ESCX]), "eval", *map(str, args)]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=300, **options
    )


def _error_lines(stderr: str) -> list[str]:
    """stderr without the progress lines (``eval: 1/3 files``) a run prints before failing."""
    return [line for line in stderr.splitlines() if not line.endswith(" files")]


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".escx-" in p.name]


def _earlier_report(folder: Path) -> None:
    """What an earlier run left: a report of clips this run will not write, and beside it the
    staging folder of a run killed outright (a pid no process has)."""
    write_wav(folder / "audio" / "clip07-original.wav", speech_like(1600))
    write_wav(folder / "audio" / "clip07-old-9-kbps.wav", speech_like(1600))
    (folder / "spectrograms").mkdir()
    (folder / "spectrograms" / "clip07-original.png").write_bytes(b"\x89PNG old")
    for name in ("report.html", "results.json", "results.md"):
        (folder / name).write_text("old\n")
    (folder / "report.html").chmod(0o600)
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"
    (folder.parent / f".{folder.name}.escx-staging.999999999-{host}.x1" / "audio").mkdir(
        parents=True
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> tuple[Path, Any]:
    """A model, a data folder of three short clips, and a report of them (``report/``) written
    with ``python -m escx.cli`` over an earlier report of other clips."""
    root = tmp_path_factory.mktemp("atomic")
    make_checkpoint(root / "model.ckpt")
    for index in range(3):
        write_wav(root / "data" / f"clip{index}.wav", speech_like(12_000, seed=index))
    _earlier_report(root / "report")
    args = ["--model", "model.ckpt", "--data", "data", "-o", "report", *FAST, "--listen", "1"]
    return root, _run(args, root, MODULE)


@pytest.fixture
def root(work) -> Path:
    folder, done = work
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_a_new_report_replaces_the_old_one_whole(work):
    """Only the new run's files are left (no stale clips), the new page has its own mode, and
    the killed run's staging folder is cleaned up."""
    folder, done = work
    assert done.returncode == 0, done.stderr[-2000:]
    out = folder / "report"
    assert sorted(p.name for p in (out / "audio").iterdir()) == [
        "clip01-model-1.5-kbps.wav",
        "clip01-original.wav",
    ]
    assert len(list((out / "spectrograms").iterdir())) == 2
    assert "<audio" in (out / "report.html").read_text()
    assert (out / "report.html").stat().st_mode & 0o777 != 0o600
    assert _leftovers(folder) == []


def _full_disk() -> None:  # a full disk, as a writer sees it
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def _terminate_mid_run(args: list, cwd: Path, out: str) -> subprocess.CompletedProcess:
    """Start ``escx eval``, send SIGTERM once its staging folder holds audio, wait for it."""
    process = subprocess.Popen(
        [ESCX, "eval", *map(str, args)], cwd=cwd, env=ENV, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if any(any(p.glob("audio/*.wav")) for p in cwd.glob(f".{out}.escx-staging.*")):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


# failure -> (extra arguments, expected exit code, words of the one line)
FAILURES = {
    "full disk": ([], 2, "no report written"),
    "SIGTERM": (["--streams", "1-6"], 143, "stopped by SIGTERM"),
    "damaged data file": ([], 2, "no report written"),
}
FAST_CASE = ("full disk", "existing report")


# One case in the fast suite (each costs a model-loading run); the others are slow.
CASES = [
    pytest.param(failure, into, marks=[] if (failure, into) == FAST_CASE else pytest.mark.slow)
    for failure in FAILURES
    for into in ("existing report", "new folder")
]


@pytest.mark.parametrize(("failure", "into"), CASES)
def test_a_failed_run_leaves_the_folder_as_it_was(root, tmp_path, failure, into):
    extra, code, words = FAILURES[failure]
    data = root / "data"
    if failure == "damaged data file":  # the second clip fails to decode mid-evaluation
        data = tmp_path / "data"
        for name in ("clip0.wav", "clip1.wav"):
            (data / name).parent.mkdir(exist_ok=True)
            (data / name).write_bytes((root / "data" / name).read_bytes())
        (data / "clip1.wav").write_bytes(b"not audio at all\n" * 64)
    out = "report" if into == "existing report" else "fresh"
    before = _snapshot(root / "report")
    args = ["--model", "model.ckpt", "--data", data, "-o", out, *FAST, *extra]
    if failure == "SIGTERM":
        done = _terminate_mid_run(args, root, out)
    else:
        done = _run(args, root, preexec_fn=_full_disk if failure == "full disk" else None)
    lines = _error_lines(done.stderr)
    assert done.returncode == code, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("escx: error:") and words in lines[0], lines
    assert "Traceback" not in done.stderr
    assert _snapshot(root / "report") == before  # byte for byte
    assert not (root / "fresh").exists()
    assert _leftovers(root) == []


def _prepare_bad_targets(root: Path) -> None:
    (root / "mine").mkdir(exist_ok=True)
    (root / "mine" / "notes.txt").write_text("mine\n")
    (root / "linked").mkdir(exist_ok=True)
    for name in ("results.json", "report.html"):
        (root / "linked" / name).write_text("{}\n")
    (root / "elsewhere.html").write_text("keep me\n")
    if not (root / "linked" / "results.md").is_symlink():
        (root / "linked" / "results.md").symlink_to(root / "elsewhere.html")


# case -> (arguments after --data DIR -o, words of the one line)
BAD_TARGETS = {
    "-o is --data": (["data", "-o", "data"], "is the --data folder"),
    "-o inside --data": (["data", "-o", "data/report"], "lies inside --data"),
    "--data inside -o": (["report/audio", "-o", "report"], "lies inside -o report"),
    "user file in -o": (["data", "-o", "mine"], "holds notes.txt, which escx did not write"),
    "symlink in -o": (["data", "-o", "linked"], "holds results.md, which escx did not write"),
}


# Every case through the console script, one also through ``python -m escx.cli``.
TARGET_CASES = [(case, "escx") for case in BAD_TARGETS] + [("-o is --data", "python -m escx.cli")]


@pytest.mark.parametrize(("case", "launcher"), TARGET_CASES)
def test_report_folders_that_would_lose_files_are_refused(root, case, launcher):
    _prepare_bad_targets(root)
    args, words = BAD_TARGETS[case]
    before = _snapshot(root)
    done = _run(["--model", "model.ckpt", "--data", *args, *FAST], root,
                [ESCX] if launcher == "escx" else MODULE)  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("escx: error:") and words in lines[0], lines
    assert _snapshot(root) == before  # nothing written anywhere, data and reports included
    assert (root / "elsewhere.html").read_text() == "keep me\n"
