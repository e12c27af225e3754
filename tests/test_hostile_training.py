"""Hostile input on the training command line and in the checkpoints it reads, through the
installed ``escx`` command and ``python -m escx.cli`` run from a folder that holds a malicious
``evil_mod.py``: one line on stderr, exit code 2, no traceback, the module never imported, and the
folder (run folders included) unchanged byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hostile_helpers import (
    ALIAS_BOMB,
    EVIL_MODULE,
    save,
    shared_list_bomb,
    snapshot,
    training_checkpoint,
)
from tools_fixtures import make_checkpoint, speech_like, write_wav
from training_helpers import ESC, REPO, TINY, build_module, write_corpus

from escx.api import load_codec
from escx.security.resources import usable_cores

ESCX = str(Path(sys.executable).parent / "escx")
TINY_DEMO = REPO / "experiments" / "tiny.yaml"  # other model dimensions than TINY
ZEN = "Namespaces are one honking great idea"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    (folder / "evil_mod.py").write_text(EVIL_MODULE)
    write_corpus(folder / "train", 2, 0.5, seed=5)
    write_wav(folder / "a.wav", speech_like(8000))
    good = make_checkpoint(folder / "codec.ckpt")
    load_codec(good).compress(folder / "a.wav", folder / "a.escx")
    blob = torch.load(good, weights_only=True)
    for name, class_path in [("evil", "evil_mod.Foo"), ("zen", "this.Nothing"),
                             ("alias", "evil_mod.STFTCodec")]:  # fmt: skip
        blob["escx"]["codec_config"]["class_path"] = class_path
        torch.save(blob, folder / f"{name}.ckpt")
    (folder / "bomb.yaml").write_text(ALIAS_BOMB)
    (folder / "big.yaml").write_text("model:\n  val_kbps:\n" + "  - 1.5\n" * 900_000)
    (folder / "sched.yaml").write_text("model:\n  scheduler:\n    class_path: evil_mod.Foo\n")
    # A run folder (its checkpoint fits TINY), and another run's checkpoint.
    module = build_module(ESC, TINY)
    save(training_checkpoint(module, "a" * 32, 10), folder / "run/checkpoints/last.ckpt")
    (folder / "run/config.yaml").write_text(yaml.safe_dump({"model": {"pretrain_steps": 2}}))
    save(training_checkpoint(module, "b" * 32, 6), folder / "other/checkpoints/last.ckpt")
    bomb = training_checkpoint(module, "c" * 32, 1)
    bomb["hyper_parameters"]["val_kbps"] = shared_list_bomb()
    save(bomb, folder / "bomb.ckpt")
    return folder


def _run(how: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    program = [ESCX] if how == "escx" else [sys.executable, "-m", "escx.cli"]
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1"}
    env.pop("ESCX_TRUSTED_MODULES", None)
    return subprocess.run([*program, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _assert_refused(result: subprocess.CompletedProcess, words: str, work: Path, before: dict):
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx: error: "), result.stderr[-3000:]
    assert words in lines[0], lines[0]
    assert ZEN not in result.stdout + result.stderr
    assert not (work / "MARKER").exists()
    assert snapshot(work) == before  # nothing written, run folders byte for byte


FIT = ["fit", "--config", str(ESC), "--config", str(TINY), "--data.train", "train",
       "--data.val", "null"]  # fmt: skip
UNTRUSTED = "is outside the packages escx imports classes from"

# Refused before Lightning is imported (a few seconds each).
# case -> (escx | module, arguments, words the one line must hold)
QUICK = {
    "codec config names this.Nothing": (
        "escx", ["compress", "a.wav", "-o", "o.escx", "--model", "zen.ckpt"], UNTRUSTED),
    "evil_mod.STFTCodec is not STFTCodec": (
        "module", ["compress", "a.wav", "-o", "o.escx", "--model", "alias.ckpt"], UNTRUSTED),
    "scheduler class in a --config file": ("module", [*FIT, "--config", "sched.yaml"], UNTRUSTED),
    "callback class option": ("escx", [*FIT, "--trainer.callbacks+=evil_mod.Foo"], UNTRUSTED),
    "YAML alias bomb": ("escx", [*FIT, "--config", "bomb.yaml"], "more than 100,000 values"),
}  # fmt: skip

# More of the same in the slow suite: 5 s each when refused before Lightning is imported, 10-15 s
# when refused after parsing (before the trainer, any process or anything on disk is made).
# `--trainer.devices -1` ("every GPU" to Lightning) is refused on the CPU: it starts no process.
CPU_ONLY = not torch.cuda.is_available()
TOO_MANY = str(max(64, usable_cores() + 1))
MORE = {
    "codec config names evil_mod.Foo": (
        "module", ["compress", "a.wav", "-o", "o.escx", "--model", "evil.ckpt"], UNTRUSTED),
    "component dotted alias option": ("module", [*FIT, "--model.codec.init_args.quantizer",
                                      "evil_mod.CrossScaleRVQ"], UNTRUSTED),
    "inline logger mapping": ("escx", [*FIT, "--trainer.logger",
                              '{"class_path": "evil_mod.Foo"}'], UNTRUSTED),
    "7 MB config": ("escx", [*FIT, "--config", "big.yaml"], "escx reads configs of up to"),
    "5,000-item list option": ("escx", [*FIT, "--model.val_kbps", f"[{','.join(['1.5'] * 5000)}]"],
                               "a list of 5,000 items"),
    "devices 64": ("escx", [*FIT, "--trainer.accelerator", "cpu", "--trainer.devices", TOO_MANY],
                   "give a count from 1 to"),
    "devices abc": ("escx", [*FIT, "--trainer.devices", "abc"], "--trainer.devices abc"),
    "devices -1 on the CPU": ("escx", [*FIT, "--trainer.accelerator", "cpu",
                              "--trainer.devices", "-1"], "means every GPU"),
    "max_steps -5": ("escx", [*FIT, "--trainer.max_steps", "-5"], "--trainer.max_steps -5"),
    "100 s crops": ("escx", [*FIT, "--data.segment_samples", "1600000"], "100 s of audio"),
    ".escx as checkpoint": ("escx", [*FIT, "--ckpt_path", "a.escx"], "it is an .escx bitstream"),
    "codec checkpoint to fit": ("escx", [*FIT, "--ckpt_path", "codec.ckpt"],
                                "a codec checkpoint (escx convert)"),
    "codec checkpoint to test": ("module", ["test", "--config", str(ESC), "--config", str(TINY),
                                 "--data.test", "train", "--ckpt_path", "codec.ckpt"],
                                 "escx eval --model codec.ckpt"),
    "shared-list bomb in hyper_parameters": ("escx", [*FIT, "--trainer.default_root_dir", "new",
                                             "--ckpt_path", "bomb.ckpt"], "more than 100,000"),
    "another run's checkpoint": ("escx", [*FIT, "--trainer.default_root_dir", "run",
                                 "--ckpt_path", "other/checkpoints/last.ckpt"],
                                 "is not from the run whose last.ckpt is in run/checkpoints"),
    "validate, another model config": ("module", ["validate", "--config", str(ESC), "--config",
                                       str(TINY_DEMO), "--data.val", "train", "--ckpt_path",
                                       "run/checkpoints/last.ckpt"], "does not fit the model"),
}  # fmt: skip
if not CPU_ONLY:
    del MORE["devices -1 on the CPU"]
else:
    MORE["accelerator gpu without one"] = (
        "escx",
        [*FIT, "--trainer.accelerator", "gpu"],
        "has no GPU that torch can use",
    )


@pytest.mark.parametrize("case", list(QUICK))
def test_refused_before_lightning_is_imported(work, case):
    how, args, words = QUICK[case]
    before = snapshot(work)
    _assert_refused(_run(how, args, work), words, work, before)


@pytest.mark.slow
def test_resume_with_another_model_config_leaves_the_run_as_it_was(work):
    """`--ckpt_path last` after the model YAML changed (item 3): refused before config.yaml or
    last.ckpt is touched, naming the run's own config."""
    before = snapshot(work)
    args = ["fit", "--config", str(ESC), "--config", str(TINY_DEMO), "--data.train", "train",
            "--trainer.default_root_dir", "run", "--ckpt_path", "last"]  # fmt: skip
    result = _run("escx", args, work)
    _assert_refused(result, "does not fit the model of this config (codec.", work, before)
    assert f"--config {work / 'run' / 'config.yaml'}" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("case", list(MORE))
def test_refused_before_anything_is_built(work, case):
    how, args, words = MORE[case]
    before = snapshot(work)
    _assert_refused(_run(how, args, work), words, work, before)


def _fit(cwd: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    args = [ESCX, "fit", "--config", str(ESC), "--config", str(TINY), "--data.train", "train",
            "--data.val", "null", "--trainer.logger", "false", *extra]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled", **(env or {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _stored(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_a_trained_run_is_resumed_only_by_itself_and_the_options_given_win(tmp_path):
    """Item 3 and 7 on a real run: refused resumes leave it byte for byte; a resume that fits
    keeps the options given (not the checkpoint's hyper-parameters) and the run id; a new folder
    may start a new run from another run's checkpoint."""
    write_corpus(tmp_path / "train", 4, 0.6, seed=3)
    (tmp_path / "evil_mod.py").write_text(EVIL_MODULE)
    first = _fit(tmp_path, "--trainer.default_root_dir", "run", "--trainer.max_steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    run_id = _stored(last)["escx_run"]["run_id"]
    other = _stored(last)
    other["escx_run"]["run_id"], other["global_step"] = "f" * 32, 6
    save(other, tmp_path / "other" / "checkpoints" / "last.ckpt")
    before = snapshot(tmp_path)
    refused = {
        "does not fit the model of this config": ["fit", "--config", str(ESC), "--config",
            str(TINY_DEMO), "--data.train", "train", "--trainer.default_root_dir", "run",
            "--ckpt_path", "last"],
        "is not from the run whose last.ckpt is in run/checkpoints": [*FIT,
            "--trainer.default_root_dir", "run", "--ckpt_path", "other/checkpoints/last.ckpt"],
        "does not fit the model": ["validate", "--config", str(ESC), "--config", str(TINY_DEMO),
            "--data.val", "train", "--ckpt_path", str(last)],
    }  # fmt: skip
    for words, args in refused.items():
        _assert_refused(_run("escx", args, tmp_path), words, tmp_path, before)

    resumed = _fit(tmp_path, "--trainer.default_root_dir", "run", "--trainer.max_steps", "3",
                   "--model.pretrain_steps", "7", "--ckpt_path", "last")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "model.pretrain_steps is 7 here and 2 in run/checkpoints/last.ckpt" in resumed.stderr
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["pretrain_steps"] == 7
    blob = _stored(last)
    assert blob["hyper_parameters"]["pretrain_steps"] == 7 and blob["global_step"] == 3
    assert blob["escx_run"]["run_id"] == run_id

    branch = _fit(tmp_path, "--trainer.default_root_dir", "branch", "--trainer.max_steps", "4",
                  "--ckpt_path", str(last))  # fmt: skip
    assert branch.returncode == 0, branch.stderr[-3000:]
    started = _stored(tmp_path / "branch" / "checkpoints" / "last.ckpt")
    assert started["global_step"] == 4 and started["escx_run"]["run_id"] != run_id
    assert _stored(last)["global_step"] == 3
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.slow
def test_ctrl_c_before_the_first_step_does_not_advise_a_resume(tmp_path):
    write_corpus(tmp_path / "train", 2, 0.5, seed=3)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "ESCX_TRUSTED_MODULES": "hostile_helpers"}  # fmt: skip
    result = _fit(
        tmp_path,
        "--trainer.default_root_dir",
        "run",
        "--trainer.callbacks+=hostile_helpers.InterruptBeforeTraining",
        env=env,
    )
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("escx")]
    assert len(ours) == 1 and "before its first step" in ours[0], result.stderr[-3000:]
    assert "--ckpt_path" not in ours[0]
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
