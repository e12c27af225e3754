"""Checking many audio files at once: in worker processes, and split across training ranks.

Checking a file (:func:`escx.audio.audio_info`) opens it, reads its header and decodes its last
samples, so a file cut short fails here once rather than at every read in training. That costs
about a millisecond a file; a corpus of a million files takes a quarter of an hour in one
process. :func:`probe_paths` spreads the files over loader-style worker processes (a
``DataLoader`` of chunks, so it forks as the training loader does), and :class:`RankGroup` lets
the ranks of a distributed run check disjoint shares and pool their results.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from escx.audio import AudioError, audio_info

log = logging.getLogger(__name__)

# Files per task: large enough that a worker's round trip is negligible, small enough that the
# work stays balanced and progress shows.
CHUNK = 256
PROGRESS_SECONDS = 15.0


class Probe(NamedTuple):
    """What checking one file found: its format, or why it cannot be used."""

    sample_rate: int
    channels: int
    frames: int
    error: str


def probe_file(path: str) -> Probe:
    """Check one file (header and last samples); never raises for a bad file."""
    try:
        info = audio_info(path)
    except AudioError as err:
        return Probe(0, 0, 0, str(err))
    except OSError as err:  # unreadable folder entry, permissions, I/O error
        return Probe(0, 0, 0, f"{path} cannot be read ({err.strerror or err})")
    return Probe(info.sample_rate, info.channels, info.frames, "")


class _Chunks:
    """Map-style dataset whose item ``k`` is the probes of the ``k``-th chunk of paths."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return (len(self.paths) + CHUNK - 1) // CHUNK

    def __getitem__(self, k: int) -> list[Probe]:
        stop = min(len(self.paths), (k + 1) * CHUNK)
        return [probe_file(self.paths[i]) for i in range(k * CHUNK, stop)]


def _keep(chunk: Any) -> Any:
    return chunk


def probe_paths(paths: Sequence[str], workers: int, label: str = "data") -> list[Probe]:
    """Check every path, in ``workers`` processes (in this one when there are few files).

    Args:
        paths: files to check.
        workers: worker processes; 0 or 1 checks in this process.
        label: the source's name in progress messages.

    Returns:
        One :class:`Probe` per path, in order.
    """
    if not paths:
        return []
    chunks = _Chunks(paths)
    if workers <= 1 or len(paths) <= CHUNK:
        batches = (chunks[k] for k in range(len(chunks)))
    else:
        from torch.utils.data import DataLoader

        batches = iter(DataLoader(chunks, batch_size=None, num_workers=workers, collate_fn=_keep))
    results: list[Probe] = []
    start = last = time.monotonic()
    for batch in batches:
        results.extend(batch)
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            last = now
            rate = len(results) / (now - start)
            log.info("%s: checked %s of %s files (%.0f/s)", label, f"{len(results):,}",
                     f"{len(paths):,}", rate)  # fmt: skip
    return results


class RankGroup:
    """This process's place among the ranks of a distributed run (one rank when there is none).

    Every rank must call the collective methods in the same order; outside a distributed run
    they return their argument.
    """

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist if dist.is_available() and dist.is_initialized() else None
        self.rank = self._dist.get_rank() if self._dist else 0
        self.world = self._dist.get_world_size() if self._dist else 1

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        box = [value if self.rank == 0 else None]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if self.world == 1:
            return [value]
        values: list[Any] = [None] * self.world
        self._dist.all_gather_object(values, value)
        return values

    def run_on_zero(self, work: Any) -> Any:
        """``work()`` on rank 0, its result (or its error, raised again) on every rank."""
        outcome: tuple[str, Any] = ("ok", None)
        if self.rank == 0:
            try:
                outcome = ("ok", work())
            except (ValueError, OSError) as err:  # bad input: every rank stops with it
                outcome = ("error", err)
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise value
        return value


def probe_shared(paths: Sequence[str], group: RankGroup, workers: int, label: str) -> list[Probe]:
    """Check ``paths`` (the same list on every rank): each rank checks every ``world``-th file
    from its rank on, and every rank gets all the results, in order."""
    mine = probe_paths([paths[i] for i in range(group.rank, len(paths), group.world)], workers,
                       label)  # fmt: skip
    if group.world == 1:
        return mine
    shares = group.gather(mine)
    results: list[Probe] = [Probe(0, 0, 0, "")] * len(paths)
    for rank, share in enumerate(shares):
        results[rank :: group.world] = share
    return results
