"""Drivers that run `escx fit` (demo, ablations, sweeps): a stopped run stops the driver with the
run's exit code, a finished or interrupted run is resumed rather than retrained, and a folder
holding a different run is refused; the demo from a scratch folder, to its summary line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from training_helpers import REPO, TINY, write_corpus

from escx.commands.common import CommandError
from escx.data.synthetic import MARKER
from escx.demo import demo_configs, summary_line
from escx.experiments.runs import RunStopped, resumable_command, run_fit


@pytest.mark.parametrize("code", [130, 143, -15])
@pytest.mark.parametrize("saved", [True, False], ids=["saved", "before-first-checkpoint"])
def test_a_stopped_run_raises_with_its_exit_code(tmp_path, code, saved):
    """The driver's advice fits what the run left: resume its last.ckpt, or, stopped before it
    wrote one, start again (there is no checkpoint to resume)."""
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    save = f"import os; os.makedirs({str(last.parent)!r}); open({str(last)!r}, 'w').close()"
    stop = f"import os, signal; os.kill(os.getpid(), {-code})" if code < 0 \
        else f"raise SystemExit({code})"  # fmt: skip
    cmd = [sys.executable, "-c", f"{save}; {stop}" if saved else stop]
    with pytest.raises(RunStopped) as stopped:
        run_fit(cmd, tmp_path / "run", "probe")
    assert stopped.value.code == (143 if code == -15 else code)
    message = str(stopped.value)
    if saved:
        assert message.endswith(f"run the same command again to resume it from {last}")
    else:
        assert "before it saved a checkpoint" in message and "resume" not in message
        assert message.endswith("run the same command again to start it afresh")


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
         "--eval-files", "1", "--no-model-metrics", "--out", str(tmp_path / "demo")],
        cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    # Wait until the run has started: before it the demo checks its fit options and evaluates the
    # untrained model (over 300 s on a loaded 2-core machine). The model summary is printed by
    # either of Lightning's progress-bar flavours (with `rich` installed, the bar itself shows
    # nothing until the end when not in a terminal); the run's signal handlers are installed
    # right after it, well within the pause.
    _read_until(demo, b"Trainable params", timeout=900)
    time.sleep(3.0)
    demo.send_signal(signal.SIGTERM)  # to the driver only: it forwards it to its run
    output, _ = demo.communicate(timeout=120)
    assert demo.returncode == 143, output.decode(errors="replace")[-2000:]
    assert b"was stopped (exit 143)" in output
    assert (tmp_path / "demo" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "demo" / "command.txt").is_file()


def test_escx_ablation_stops_with_the_code_of_a_stopped_run(tmp_path, monkeypatch, capsys):
    """The ablation driver through its command: a variant's run stopped by SIGTERM (exit 143)
    stops the study with 143 and the resume hint, before any evaluation."""
    import escx.commands.ablation as ablation_command
    import escx.experiments.runs as runs
    from escx.cli import main

    real_popen = subprocess.Popen

    def stopped_fit(cmd, *args, **kwargs):  # `escx fit` exits as after SIGTERM; others run
        if "escx.cli" in cmd:
            cmd = [sys.executable, "-c", "raise SystemExit(143)"]
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(runs.subprocess, "Popen", stopped_fit)
    monkeypatch.setattr(ablation_command, "check_fit_commands", lambda *args: None)  # not a run
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


def test_the_demo_stacks_its_recipe_after_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # configs are found in the source checkout from any folder
    assert [Path(c).name for c in demo_configs()] == ["esc.yaml", "tiny.yaml", "quick.yaml"]
    assert all(Path(c).is_file() for c in demo_configs())
    names = [Path(c).name for c in demo_configs("esc", ["extra.yaml"])]
    assert names == ["esc.yaml", "tiny.yaml", "extra.yaml"]


def test_the_demo_summary_line_names_real_speech_and_both_bitrates():
    rows = [{"kbps": k, "pesq": p, "stoi": 0.7, "sisdr": s} for k, p, s in
            ((1.5, 1.21, -8.34), (4.5, 1.4, 0.0), (9.0, 1.623, 0.44))]  # fmt: skip
    line = summary_line(2000, "quick", Path("data"), 143, False, rows, Path("r/report.html"))
    assert line == (
        "escx demo: trained 2000 steps (quick recipe) on data/ (143 train files, real speech): "
        "9 kbps PESQ 1.62 STOI 0.70 SI-SDR 0.4 dB; 1.5 kbps PESQ 1.21 STOI 0.70 SI-SDR -8.3 dB; "
        "report r/report.html"
    )
    two = summary_line(2000, "quick", Path("data"), 143, False, rows, Path("r.html"), processes=2)
    assert two.startswith("escx demo: trained 2000 steps (quick recipe, 2 processes) on data/")
    # Opus on the same clips goes beside the codec, for scale; its rows never replace the codec's.
    opus = [{"codec": "opus", "kbps": k, "pesq": p} for k, p in ((6.0, 1.9), (9.0, 3.07))]
    line = summary_line(2000, "quick", Path("data"), 143, False, opus + rows, Path("r.html"))
    assert "9 kbps PESQ 1.62 STOI 0.70 SI-SDR 0.4 dB; 1.5 kbps PESQ 1.21" in line
    assert line.endswith("; Opus at 9 kbps: PESQ 3.07; report r.html")


def test_the_demo_from_a_scratch_folder_ends_with_a_summary_and_warns_of_synthetic_data(tmp_path):
    """`python -m escx.demo` as a user runs it, on data marked synthetic (as `make data` offline
    leaves it): progress on stderr, the report in the run folder, a loud warning, and one
    summary line last."""
    data = tmp_path / "data"
    write_corpus(data / "train", 4, 0.6, seed=21)
    write_corpus(data / "val", 1, 0.5, seed=22)
    (data / "train" / MARKER).write_text("synthetic speech-like audio\n")
    result = subprocess.run(
        [sys.executable, "-m", "escx.demo", "--data", "data", "--steps", "2", "--eval-files", "1",
         "--config", str(TINY), "--no-model-metrics", "--out", "demo"],
        cwd=tmp_path, env={**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    number = r"(-?\d+\.\d+|n/a)"
    bitrate = rf"{{}} kbps PESQ {number} STOI {number} SI-SDR {number} dB"
    opus = rf"; Opus at 9 kbps: PESQ {number}" if _has_opus() else ""
    assert re.fullmatch(
        r"escx demo: trained 2 steps \(quick recipe, 2 processes\) on data/ \(4 train files, "
        rf"SYNTHETIC audio, not speech\): {bitrate.format('9')}; {bitrate.format('1.5')}{opus}; "
        r"report demo/report/report\.html",
        lines[-1],
    ), lines[-1]
    assert lines[-2].startswith("!!! WARNING: data holds SYNTHETIC") and "NOT speech" in lines[-2]
    for label in ("eval before training", "eval after 2 steps (every bitrate)"):
        assert f"{label}: 1/1 files" in result.stderr  # progress, as lines when not a terminal
    report = tmp_path / "demo" / "report"
    assert (report / "report.html").is_file() and (report / "quality_vs_bitrate.png").is_file()
    assert "Trained 2 steps with the quick recipe (experiments/esc.yaml + experiments/tiny.yaml " \
        "+ experiments/recipes/quick.yaml + " in (report / "results.md").read_text()  # fmt: skip


def _has_opus() -> bool:
    from escx.baselines import BaselineUnavailable, load_baseline

    try:
        load_baseline("opus")
    except BaselineUnavailable:
        return False
    return True


def test_a_run_folder_is_checked_without_touching_it(tmp_path):
    """Drivers check every run folder before the first run starts: nothing is created."""
    from escx.experiments.runs import check_run_folder

    cmd = ["escx", "fit", "--trainer.max_steps=10"]
    assert check_run_folder(cmd, tmp_path / "new") is False and not (tmp_path / "new").exists()
    resumable_command(cmd, tmp_path / "run")
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert check_run_folder(cmd, tmp_path / "run") is True
    with pytest.raises(CommandError, match="started with other options"):
        check_run_folder([*cmd, "--seed_everything=1"], tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
