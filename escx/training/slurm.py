"""SLURM preemption: SIGUSR1 saves ``last.ckpt`` at a batch boundary, requeues the job, exits.

Lightning's own SLURM handler (``SLURMEnvironment(auto_requeue=True)``) saves an
``hpc_ckpt_N.ckpt`` from inside the signal handler, wherever the training step happens to be,
and keeps training until SLURM kills the job. escx does it the way it handles SIGTERM
(:mod:`escx.training.stopping`): the signal is only recorded, every rank agrees on it at the end
of the current batch, ``last.ckpt`` is written there atomically (so the resumed run is exact),
rank 0 runs ``scontrol requeue <job>``, and every rank exits with :data:`EXIT_REQUEUED` (138,
128 + SIGUSR1, as a shell reports a signal). escx installs its handler as soon as it starts
under SLURM, so a SIGUSR1 during data loading does not kill the job unsaved, and Lightning,
finding a handler in place, does not install its own.

The requeued job runs the same command again, without ``--ckpt_path``. escx stores the SLURM
job id in every checkpoint; a start in a folder whose ``last.ckpt`` was written by the same job
(the requeued job keeps its id) resumes it as ``--ckpt_path last`` would, W&B run included. Any
other start in that folder is still refused (one run per folder), so a second job pointed at the
folder by mistake cannot overwrite the run.

Send the signal before the time limit with ``#SBATCH --signal=USR1@120`` (to every task; not
``B:USR1``, which reaches only the batch shell). See ``experiments/slurm/``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from typing import Any

log = logging.getLogger(__name__)

REQUEUE_SIGNAL = signal.SIGUSR1
EXIT_REQUEUED = 128 + int(signal.SIGUSR1)

_pending: list[int] = []  # a SIGUSR1 that arrived before training started
_requeue_outcome: dict[str, Any] = {}


class RequeueExit(SystemExit):
    """The run stopped for a SLURM requeue (exit code :data:`EXIT_REQUEUED`)."""

    def __init__(self) -> None:
        super().__init__(EXIT_REQUEUED)


def under_slurm() -> bool:
    """Whether this process is a SLURM task (Lightning's rule: ``SLURM_NTASKS`` is set and the
    job is not an interactive one named ``bash`` or ``interactive``)."""
    interactive = os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")
    return "SLURM_NTASKS" in os.environ and not interactive


def slurm_job_id() -> str | None:
    """The job to requeue: ``ARRAYJOB_TASK`` for an array task, else ``SLURM_JOB_ID``."""
    if not under_slurm():
        return None
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}" if array else None
    job = job or os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


def _record(signum: int, frame: Any) -> None:
    _pending.append(signum)


def install_early_handler() -> None:
    """Under SLURM, record SIGUSR1 from now on (its default action would kill the job)."""
    if under_slurm() and threading.current_thread() is threading.main_thread():
        signal.signal(REQUEUE_SIGNAL, _record)


def take_pending() -> int:
    """The SIGUSR1 recorded before training started, once (0 if none)."""
    return _pending.pop() if _pending else 0


def requeue() -> bool:
    """``scontrol requeue <job>``; False (with a warning) when it fails."""
    job = slurm_job_id()
    if job is None:
        log.warning("SIGUSR1 under SLURM without a usable SLURM_JOB_ID: not requeued")
        return False
    try:
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True,
                                timeout=60, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as err:
        _requeue_outcome.update(job=job, ok=False, why=str(err))
        log.warning("could not requeue SLURM job %s (%s)", job, err)
        return False
    ok = result.returncode == 0
    why = (result.stderr or result.stdout).strip().splitlines()[:1]
    _requeue_outcome.update(job=job, ok=ok, why=why[0] if why else f"exit {result.returncode}")
    if ok:
        log.info("requeued SLURM job %s", job)
    else:
        log.warning("scontrol requeue %s failed: %s", job, _requeue_outcome["why"])
    return ok


def stopped_message() -> str:
    """The last line of a run that stopped for a requeue."""
    head = f"escx: training stopped by SIGUSR1 for a SLURM requeue (exit {EXIT_REQUEUED})"
    job = _requeue_outcome.get("job") or slurm_job_id()
    if not _requeue_outcome:  # another rank (global rank 0) asked for the requeue
        return f"{head}; rank 0 requeues job {job}, which resumes from last.ckpt"
    if _requeue_outcome["ok"]:
        return f"{head}; job {job} requeued: it resumes from last.ckpt when SLURM restarts it"
    return (
        f"{head}; last.ckpt was written but job {job} was not requeued "
        f"({_requeue_outcome.get('why', 'no job id')}): submit the same command with "
        "--ckpt_path last"
    )


def same_job_message(folder: Any, stored: str | None) -> str:
    """The refusal for a start in a folder holding another job's (or no job's) run."""
    job = slurm_job_id()
    owner = f"SLURM job {stored}" if stored else "a run started outside this job"
    return (
        f"{folder} already holds a run (last.ckpt) of {owner}, and this is job {job}: a "
        "requeued job resumes its own run by itself; to continue this one pass --ckpt_path "
        "last, or start the new run in another folder (--trainer.default_root_dir DIR)"
    )
