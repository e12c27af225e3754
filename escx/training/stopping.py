"""Ctrl-C and SIGTERM during training: stop at the end of the current batch, never mid-step.

Lightning turns SIGTERM into an exception at whichever loop check comes next (after the batch,
or after the epoch's end hooks) and Ctrl-C into a KeyboardInterrupt anywhere, even inside an
optimizer step. A checkpoint written at those points does not always resume exactly: one taken
at an epoch's end restarts one batch late with shifted data (measured: losses differ from the
uninterrupted run from the first resumed step on). escx therefore only *records* the request
while training and acts on it in ``on_train_batch_end``, the point Lightning's own step-based
checkpoints use and restore from exactly. A second Ctrl-C stops at once, as before. Under
SLURM, SIGUSR1 (the requeue signal) is recorded the same way (:mod:`escx.training.slurm`).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import lightning as L
import torch

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequests:
    """Records Ctrl-C / SIGTERM while installed; ranks agree on the request at each batch end."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Replace the SIGINT and SIGTERM handlers, and SIGUSR1's under SLURM (main thread only;
        a no-op elsewhere). A SIGUSR1 recorded before training started counts as requested."""
        from escx.training.slurm import REQUEUE_SIGNAL, take_pending, under_slurm

        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        self.signum = take_pending()
        signals = (*STOP_SIGNALS, REQUEUE_SIGNAL) if under_slurm() else STOP_SIGNALS
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._request)

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _request(self, signum: int, frame: Any) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now
        self.signum = signum

    def agreed(self, trainer: L.Trainer) -> int:
        """The requested signal, the same on every rank (a signal may reach one rank only)."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self.signum
        flag = torch.tensor([self.signum], device=trainer.strategy.root_device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())


def stop_exception(signum: int) -> BaseException:
    """What Lightning expects for the signal: its SIGTERM exit, or a KeyboardInterrupt; for
    SLURM's SIGUSR1 escx's own :class:`~escx.training.slurm.RequeueExit`."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from escx.training.slurm import REQUEUE_SIGNAL, RequeueExit

    if signum == REQUEUE_SIGNAL:
        return RequeueExit()
    return SIGTERMException() if signum == signal.SIGTERM else KeyboardInterrupt()
