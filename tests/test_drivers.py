"""Drivers that run `escx fit` (demo, ablations, sweeps): a stopped run stops the driver with the
run's exit code, a finished or interrupted run is resumed rather than retrained, and a folder
holding a different run is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from training_helpers import REPO, write_corpus

from escx.commands.common import CommandError
from escx.experiments.runs import RunStopped, resumable_command, run_fit


@pytest.mark.parametrize("code", [130, 143, -15])
def test_a_stopped_run_raises_with_its_exit_code(tmp_path, code):
    cmd = [sys.executable, "-c", f"import os, signal; os.kill(os.getpid(), {-code})"] if code < 0 \
        else [sys.executable, "-c", f"raise SystemExit({code})"]  # fmt: skip
    with pytest.raises(RunStopped) as stop:
        run_fit(cmd, tmp_path / "run", "probe")
    assert stop.value.code == (143 if code == -15 else code)
    assert "run the same command again to resume" in str(stop.value)


def test_a_failed_run_returns_its_code_and_a_finished_one_zero(tmp_path):
    assert run_fit([sys.executable, "-c", "raise SystemExit(1)"], tmp_path / "a", "probe") == 1
    assert run_fit([sys.executable, "-c", "pass"], tmp_path / "b", "probe") == 0


def test_a_run_folder_is_resumed_with_the_same_command_and_refused_with_another(tmp_path):
    root = tmp_path / "run"
    cmd = ["escx", "fit", "--trainer.max_steps=10"]
    assert resumable_command(cmd, root) == cmd  # nothing there yet
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resumable_command(cmd, root) == [*cmd, "--ckpt_path", "last"]
    with pytest.raises(CommandError, match="started with other options"):
        resumable_command(["escx", "fit", "--trainer.max_steps=20"], root)


def _read_until(process: subprocess.Popen, marker: bytes, timeout: float) -> bytes:
    os.set_blocking(process.stdout.fileno(), False)
    seen, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline and marker not in seen:
        assert process.poll() is None, seen.decode(errors="replace")[-2000:]
        chunk = process.stdout.read()
        seen += chunk or b""
        time.sleep(0.05)
    assert marker in seen, seen.decode(errors="replace")[-2000:]
    return seen


def test_sigterm_to_the_demo_stops_its_run_and_exits_143(tmp_path):
    data = tmp_path / "data"
    write_corpus(data / "train", 8, 0.6, seed=11)
    write_corpus(data / "val", 1, 0.5, seed=12)
    demo = subprocess.Popen(
        [sys.executable, "-m", "escx.demo", "--data", str(data), "--steps", "400",
         "--eval-files", "1", "--out", str(tmp_path / "demo")],
        cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _read_until(demo, b"Epoch 0:", timeout=300)  # training has started
    demo.send_signal(signal.SIGTERM)  # to the driver only: it forwards it to its run
    output, _ = demo.communicate(timeout=120)
    assert demo.returncode == 143, output.decode(errors="replace")[-2000:]
    assert b"was stopped (exit 143)" in output
    assert (tmp_path / "demo" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "demo" / "command.txt").is_file()


def test_escx_ablation_stops_with_the_code_of_a_stopped_run(tmp_path, monkeypatch, capsys):
    """The ablation driver through its command: a variant's run stopped by SIGTERM (exit 143)
    stops the study with 143 and the resume hint, before any evaluation."""
    import escx.experiments.runs as runs
    from escx.cli import main

    real_popen = subprocess.Popen

    def stopped_fit(cmd, *args, **kwargs):  # `escx fit` exits as after SIGTERM; others run
        if "escx.cli" in cmd:
            cmd = [sys.executable, "-c", "raise SystemExit(143)"]
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(runs.subprocess, "Popen", stopped_fit)
    monkeypatch.chdir(REPO)
    data = tmp_path / "data"
    write_corpus(data / "train", 2, 0.5, seed=13)
    write_corpus(data / "val", 1, 0.5, seed=14)
    code = main(["ablation", "pretrain", "--steps", "2", "--data", str(data),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 143
    err = capsys.readouterr().err
    assert "with-pretraining was stopped (exit 143)" in err and "run the same command" in err
    assert not (tmp_path / "out" / "results.csv").exists()
