"""Multi-node and SLURM preemption through the installed ``escx`` command (slow): two torchrun
launchers train one model; SIGUSR1 under SLURM saves, requeues and exits, and the same command
run again (as the requeued job runs it) resumes exactly, in the same W&B run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from training_helpers import ESC, TINY, cli_env, free_port, logged_losses, write_corpus

ESCX = str(Path(sys.executable).parent / "escx")
TORCHRUN = str(Path(sys.executable).parent / "torchrun")

pytestmark = pytest.mark.slow

LOGGERS = """
trainer:
  logger:
    - class_path: lightning.pytorch.loggers.CSVLogger
      init_args: {save_dir: logs, flush_logs_every_n_steps: 1}
    - class_path: lightning.pytorch.loggers.WandbLogger
      init_args: {project: escx, save_dir: ., offline: true}
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "train", 8, 0.6, seed=3)


def _fit(train: Path, root: str, steps: int, *extra: str) -> list[str]:
    return [
        "fit", "--config", str(ESC), "--config", str(TINY), "--data.train", str(train),
        "--data.val", "null", "--trainer.default_root_dir", root,
        "--trainer.max_steps", str(steps), *extra,
    ]  # fmt: skip


def test_two_torchrun_launchers_train_one_model(corpus, tmp_path):
    """Two 'nodes' (one launcher and one process each, own working folders) rendezvous on
    127.0.0.1: equal weights and stream draws on both ranks, one checkpoint, one data index."""
    port = str(free_port())
    run = tmp_path / "run"  # the shared file system of a cluster
    launchers = []
    for node in (0, 1):
        folder = tmp_path / f"node{node}"
        folder.mkdir()
        cmd = [TORCHRUN, "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
               "--master-addr", "127.0.0.1", "--master-port", port, ESCX,
               *_fit(corpus, str(run), 4, "--trainer.num_nodes", "2", "--trainer.devices", "1",
                     "--trainer.accelerator", "cpu", "--trainer.logger", "false",
                     "--trainer.callbacks+=training_helpers.RankDump")]  # fmt: skip
        env = cli_env(ESCX_PROBE_DIR=str(tmp_path), OMP_NUM_THREADS="1")
        launchers.append(subprocess.Popen(cmd, cwd=folder, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))  # fmt: skip
    outputs = [launcher.communicate(timeout=1800)[0] for launcher in launchers]
    for launcher, output in zip(launchers, outputs, strict=True):
        assert launcher.returncode == 0, output[-3000:]
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    probes = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert probes[0]["world"] == 2 and probes[0]["streams"] == probes[1]["streams"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt"]
    assert len(list((run / "index").glob("train-*.csv"))) == 1  # built once, by rank 0
    assert [list((tmp_path / f"node{n}").iterdir()) for n in (0, 1)] == [[], []]  # all in run/


def test_sigusr1_under_slurm_requeues_and_the_same_command_resumes(corpus, tmp_path):
    steps = 8
    (tmp_path / "loggers.yaml").write_text(LOGGERS)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "$@" >> "$SCONTROL_LOG"\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_JOB_NAME": "escx-test",
        "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SCONTROL_LOG": str(tmp_path / "scontrol.log"), "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
    }  # fmt: skip
    cmd = [ESCX, *_fit(corpus, ".", steps, "--config", str(tmp_path / "loggers.yaml"))]
    (tmp_path / "full").mkdir()
    full = subprocess.run(cmd, cwd=tmp_path / "full", env=cli_env(**slurm), capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    assert full.returncode == 0, full.stderr[-3000:]
    reference = logged_losses(tmp_path / "full")
    assert sorted(reference) == list(range(steps))
    (tmp_path / "scontrol.log").unlink(missing_ok=True)

    folder = tmp_path / "job"
    folder.mkdir()
    run = subprocess.Popen(cmd, cwd=folder, env=cli_env(**slurm), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 1200
    while len(logged_losses(folder)) < 3 and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before the signal"
        time.sleep(0.05)
    run.send_signal(signal.SIGUSR1)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 138, stderr[-3000:]
    assert "job 4242 requeued" in stderr.strip().splitlines()[-1]
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    last = folder / "checkpoints" / "last.ckpt"
    blob = torch.load(last, weights_only=True)
    assert blob["escx_run"]["slurm_job_id"] == "4242"
    assert 3 <= blob["global_step"] < steps  # saved at a step boundary, mid-run
    assert not list(folder.glob("hpc_ckpt_*"))  # Lightning's mid-step handler did not run

    other = subprocess.run(cmd, cwd=folder, env=cli_env(**{**slurm, "SLURM_JOB_ID": "999"}),
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert other.returncode == 2 and "Traceback" not in other.stderr
    errors = [line for line in other.stderr.splitlines() if line.startswith("escx:")]
    assert len(errors) == 1 and "of SLURM job 4242, and this is job 999" in errors[0]

    requeued = subprocess.run(cmd, cwd=folder, env=cli_env(**slurm, SLURM_RESTART_COUNT="1"),
                              capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert "SLURM job 4242 (restart 1) resumes its run" in requeued.stderr
    assert "0 checked" in requeued.stderr  # the data index of the first start was reused
    losses = logged_losses(folder)
    done = blob["global_step"]  # Lightning may stop before logging the batch in flight
    assert set(range(steps)) - {done - 1} <= set(losses) <= set(range(steps))
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=1e-5, abs=1e-7), step
    ours = torch.load(last, weights_only=True)["state_dict"]
    theirs = torch.load(tmp_path / "full/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    for name, value in theirs.items():
        torch.testing.assert_close(ours[name], value, rtol=1e-5, atol=1e-6, msg=name)
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and len({r.name.rsplit("-", 1)[1] for r in runs}) == 1  # one W&B run
