"""The drivers (`escx sweep`, `escx ablation`, `python -m escx.demo`) under careless and hostile
input, through the commands a user types, from a clean folder: one line on stderr, exit code 2,
no traceback, and nothing created (no runs/ or results/ folder) when anything is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from training_helpers import ESC, TINY, write_corpus

from escx.commands.common import CommandError
from escx.experiments.fit_check import TIMEOUT_VARIABLE, check_timeout
from escx.experiments.sweep import check_sets, expand_command
from escx.experiments.sweep_file import load_sweep
from escx.security.limits import MAX_CONFIG_BYTES

ESCX = str(Path(sys.executable).parent / "escx")
ENTRIES = {"escx": [ESCX], "python -m escx.cli": [sys.executable, "-m", "escx.cli"]}
ENV = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
FIT = ["${env}", "escx", "fit", "--config", str(ESC), "--config", str(TINY), "${args}"]


def _sweep(method: str, parameters: dict, command: list | None = None) -> str:
    return yaml.safe_dump(
        {
            "program": "escx",
            "method": method,
            "metric": {"name": "val/pesq@9kbps"},
            "parameters": parameters,
            "command": command or FIT,
        }  # fmt: skip
    )


# Nine levels of ten aliases each: 10**9 values from a few hundred bytes.
_LEVELS = "\n".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else ', '.join(['x'] * 10)}]"
    for i in range(9)
)
BOMB = f"""method: grid
metric: {{name: val/pesq@9kbps}}
{_LEVELS}
parameters: {{model.quantizer_dropout: {{values: *l8}}}}
command: [escx, fit, "${{args}}"]
"""
# Sweep files the table uses, written into the clean folder.
FILES = {
    "min-only.yaml": _sweep("random", {"model.optimizer.init_args.lr": {"min": 0.1}}),
    "uniform.yaml": _sweep("random", {"model.optimizer.init_args.lr": {"distribution": "uniform"}}),
    "number.yaml": _sweep("grid", {"model.quantizer_dropout": {"values": 0.5}}),
    "string.yaml": _sweep("grid", {"model.quantizer_dropout": {"values": "0.5"}}),
    "random-empty.yaml": _sweep("random", {"model.quantizer_dropout": {"values": []}}),
    "grid-empty.yaml": _sweep("grid", {"model.quantizer_dropout": {"values": []}}),
    "huge-grid.yaml": _sweep("grid", {f"p{i}": {"values": list(range(10))} for i in range(3)}),
    "other-program.yaml": _sweep(
        "grid", {"a": {"values": [1]}}, ["python", "-c", "print('hi')", "${args}"]
    ),
    "no-args.yaml": _sweep("grid", {"a": {"values": [1]}}, ["escx", "fit"]),
    "bomb.yaml": BOMB,
    "ok.yaml": _sweep("grid", {"model.quantizer_dropout": {"values": [0.5, 1.0]}}),
}

# case -> (arguments, words the one line must hold)
CASES = {
    "sweep: min without max": (["sweep", "min-only.yaml"], "min needs max"),
    "sweep: uniform without bounds": (["sweep", "uniform.yaml"],
                                      "distribution uniform needs min and max"),
    "sweep: values 0.5": (["sweep", "number.yaml"], "values must be a list"),
    "sweep: values '0.5'": (["sweep", "string.yaml"],
                            "got the string '0.5'; write values: [0.5]"),
    "sweep: random values []": (["sweep", "random-empty.yaml"], "values is empty"),
    "sweep: grid values []": (["sweep", "grid-empty.yaml"], "values is empty"),
    "sweep: 1,000-run grid": (["sweep", "huge-grid.yaml"],
                              "the grid has 1,000 runs, more than 100; pass --count N"),
    "sweep: another program": (["sweep", "other-program.yaml"],
                               "command must start with `escx fit`"),
    "sweep: no ${args}": (["sweep", "no-args.yaml"], "command must contain ${args}"),
    "sweep: YAML alias bomb": (["sweep", "bomb.yaml"], "expands to more than 100,000 values"),
    "sweep: oversized file": (["sweep", "big.yaml"], "sweep file of 1,048,580 bytes"),
    "sweep: --cuont": (["sweep", "ok.yaml", "--cuont", "1"],
                       "unknown option --cuont; did you mean --count?"),
    "sweep: --print_config": (["sweep", "ok.yaml", "--print_config"],
                              "--print_config cannot be passed to the runs"),
    "sweep: --eval-files 0": (["sweep", "ok.yaml", "--eval-files", "0"],
                              "--eval-files must be at least 1"),
    "sweep: --trainer.devices abc": (["sweep", "ok.yaml", "--trainer.devices", "abc"],
                                     "--trainer.devices abc: on the CPU give a process count"),
    "sweep: fit option typo": (["sweep", "ok.yaml", "--trainer.max_stepz", "3"],
                               "unrecognized arguments: --trainer.max_stepz"),
    "ablation: --devices abc": (["ablation", "pretrain", "--devices", "abc"],
                                "--devices must be a whole number from 1 to"),
    "ablation: --devices -1": (["ablation", "pretrain", "--devices", "-1"],
                               "--devices must be a whole number from 1 to"),
    "ablation: --devices 999": (["ablation", "pretrain", "--devices", "999"],
                                "--devices 999 is more than this machine has"),
    "ablation: --eval-files 0": (["ablation", "pretrain", "--eval-files", "0"],
                                 "--eval-files must be at least 1"),
    "ablation: --cuont": (["ablation", "pretrain", "--cuont", "1"],
                          "unknown option --cuont"),
}  # fmt: skip


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    """Sweep files and a small data/ folder, copied into each case's clean folder."""
    folder = tmp_path_factory.mktemp("hostile-sources")
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / "big.yaml").write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    write_corpus(folder / "data" / "train", 2, 0.5, seed=31)
    write_corpus(folder / "data" / "val", 1, 0.5, seed=32)
    return folder


def _clean_folder(sources: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    subprocess.run(["cp", "-r", str(sources), str(work)], check=True)
    return work


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# Each case starts a Python that imports torch (about 3 s): the fast suite runs these through the
# console script, and the slow one runs every case through both entry points. The dry parse of
# escx fit options (a second process importing Lightning) is slow too.
FAST = {"sweep: values '0.5'", "sweep: grid values []", "sweep: YAML alias bomb",
        "sweep: --cuont", "ablation: --devices abc", "ablation: --eval-files 0"}  # fmt: skip
RUNS = [
    pytest.param(case, entry, id=f"{case}-{entry}",
                 marks=() if entry == "escx" and case in FAST else pytest.mark.slow)
    for case in CASES
    for entry in ENTRIES
]  # fmt: skip


@pytest.mark.parametrize(("case", "entry"), RUNS)
def test_a_driver_refuses_bad_input_in_one_line_before_anything_runs(
    sources, tmp_path, case, entry
):
    args, words = CASES[case]
    work = _clean_folder(sources, tmp_path)
    before = _tree(work)
    result = subprocess.run(
        [*ENTRIES[entry], *args], cwd=work, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx"), result.stderr[-2000:]
    assert words in lines[0] and "Traceback" not in result.stderr, lines[0]
    assert _tree(work) == before  # no runs/, no results/, nothing else


# Demo cases: (arguments, words of the one line on stderr)
DEMO_CASES = {
    "--data missing": (["--data", "nowhere"], "--data nowhere is not a folder"),
    "--processes 999": (["--processes", "999"], "--processes 999 is more than this machine has"),
    "--eval-files 0": (["--eval-files", "0"], "--eval-files must be at least 1"),
    "--cuont": (["--cuont", "1"], "unknown option --cuont"),
    "no validation audio": (["--data", "empty"], "no validation audio in empty/val"),
}


@pytest.mark.parametrize(
    "case",
    [
        c if c != "no validation audio" else pytest.param(c, marks=pytest.mark.slow)
        for c in DEMO_CASES
    ],
)
def test_the_demo_reports_errors_on_stderr_in_one_line(sources, tmp_path, case):
    args, words = DEMO_CASES[case]
    work = _clean_folder(sources, tmp_path)
    (work / "empty" / "train").mkdir(parents=True)
    (work / "empty" / "val").mkdir()
    before = _tree(work)
    result = subprocess.run(
        [sys.executable, "-m", "escx.demo", "--config", str(TINY), *args],
        cwd=work, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout[-1000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx demo: error:"), result.stderr[-2000:]
    assert words in lines[0] and "Traceback" not in result.stderr
    assert "error" not in result.stdout
    assert _tree(work) == before


# $ESCX_FIT_CHECK_TIMEOUT: (driver arguments, setting, words of the one line on stderr). A bad
# value, or a limit the dry parse of the runs' escx fit options cannot meet (its child alone takes
# seconds to import Lightning), fails in one line that names the variable.
TIMEOUT_CASES = {
    "sweep: abc": (["sweep", "ok.yaml"], "abc",
                   "ESCX_FIT_CHECK_TIMEOUT='abc' in the environment: write a number of seconds "
                   "above 0 and at most 86,400 (e.g. ESCX_FIT_CHECK_TIMEOUT=600)"),
    "ablation: -5": (["ablation", "pretrain"], "-5",
                     "ESCX_FIT_CHECK_TIMEOUT='-5' in the environment"),
    "sweep: 0.001 s": (["sweep", "ok.yaml"], "0.001",
                       "checking the escx fit options of 2 runs took over 0.001 s; on a busy "
                       "machine allow longer with ESCX_FIT_CHECK_TIMEOUT=SECONDS"),
}  # fmt: skip


@pytest.mark.parametrize("case", TIMEOUT_CASES)
def test_the_fit_check_time_limit_comes_from_the_environment(sources, tmp_path, case):
    args, setting, words = TIMEOUT_CASES[case]
    work = _clean_folder(sources, tmp_path)
    before = _tree(work)
    result = subprocess.run(
        [ESCX, *args], cwd=work, env={**ENV, TIMEOUT_VARIABLE: setting},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx: error: "), result.stderr[-2000:]
    assert words in lines[0] and "Traceback" not in result.stderr, lines[0]
    assert _tree(work) == before


def test_the_fit_check_time_limit_defaults_to_120_s_and_10_s_per_run(monkeypatch):
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    assert check_timeout(3) == 150.0
    for setting, seconds in (("", 150.0), (" 900 ", 900.0), ("2.5", 2.5), ("86400", 86400.0)):
        monkeypatch.setenv(TIMEOUT_VARIABLE, setting)
        assert check_timeout(3) == seconds
    for setting in ("0", "-1", "nan", "inf", "1e9", "10s", "1\n2"):
        monkeypatch.setenv(TIMEOUT_VARIABLE, setting)
        with pytest.raises(CommandError, match=f"^{TIMEOUT_VARIABLE}=") as refused:
            check_timeout(3)
        assert "\n" not in str(refused.value)


def test_sweep_values_are_checked_for_every_swept_setting():
    """A 3 x 3 grid is checked with 5 commands that try each value once; a quoted number in a
    list is passed on as W&B's agent does (`--x=0.5`), which escx fit reads as 0.5."""
    grid = {"a": {"values": [1, 2, 3]}, "b": {"values": ["x", "y", "z"]}}
    sets, needed = check_sets(grid)
    assert needed == len(sets) == 5
    assert {s["a"] for s in sets} == {1, 2, 3} and {s["b"] for s in sets} == {"x", "y", "z"}
    bounds, _ = check_sets({"lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1}})
    assert [s["lr"] for s in bounds] == [1e-4, 1.0]
    cmd = expand_command(["escx", "fit", "${args}"], {"model.quantizer_dropout": "0.5"}, "escx")
    assert cmd[-1] == "--model.quantizer_dropout=0.5"


def test_a_sweep_without_a_goal_minimises_as_wandb_does(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(_sweep("grid", {"model.quantizer_dropout": {"values": [0.5]}}))
    assert load_sweep(path)["metric"]["goal"] == "minimize"


def _sigint_as_in_a_terminal() -> None:
    """SIGINT at its default in the child: a suite started in the background by a
    non-interactive shell (as CI may start it) passes SIGINT on ignored, and a process that
    starts with SIGINT ignored keeps ignoring Ctrl-C, as a terminal's foreground one does not."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_says_to_start_again(sources, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while the first run of
    `escx sweep` starts: exit 130, and the advice is to run the command again, not to resume a
    checkpoint that was never written."""
    work = _clean_folder(sources, tmp_path)
    sweep = subprocess.Popen(
        [ESCX, "sweep", "ok.yaml", "--data.train", "data/train", "--data.val", "data/val"],
        cwd=work, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=_sigint_as_in_a_terminal,
    )  # fmt: skip
    started = work / "runs" / "sweeps" / "ok" / "run-000" / "command.txt"
    deadline = time.monotonic() + 240
    while not started.exists() and sweep.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), sweep.communicate()[1][-2000:]
    time.sleep(1.0)  # the run is starting Python: long before its first step
    os.killpg(sweep.pid, signal.SIGINT)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0] == (
        "escx: error: training sweep run 1 was stopped (exit 130) before it saved a checkpoint; "
        "run the same command again to start it afresh"
    )
    assert not (started.parent / "checkpoints" / "last.ckpt").exists()
