"""The data index: what escx learnt about a folder's audio files, kept so later starts reuse it.

The first start of a training run on a folder checks every audio file (header and last
samples: :mod:`escx.data.probe`) and writes the result as a CSV manifest, by default in the
run folder (``<run>/index/<folder>-<hash>.csv``, one file per source folder), columns:

``path`` (absolute), ``duration`` (s), ``frames``, ``sample_rate``, ``channels`` (as stored
in the file), ``size`` and ``mtime_ns`` (to notice a change), ``error`` (why a file is
unusable; empty for usable files).

Later starts (a resumed or requeued run, another run pointed at the same ``index_dir``) walk
the folder again, which reads names and ``stat`` only and opens no file, and check only the
files that are new or whose size or modification time changed; the index is rewritten only
when something changed. Because it is a manifest, ``--data.train INDEX.csv`` skips even the
walk (:mod:`escx.data.table_sources`). In a distributed run rank 0 walks and plans, every rank
checks a disjoint share of the files to check, and rank 0's finished table is sent to every
rank, so all ranks train on the same list.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from escx.atomic import atomic_path
from escx.audio import is_audio_file
from escx.data.items import NoUsableAudioError, log_once_per_process
from escx.data.manifest import ManifestError, read_manifest
from escx.data.probe import Probe, RankGroup, probe_shared
from escx.data.table import AudioTable, PathColumn
from escx.files.scan import ScanError, find_files_with_stats

log = logging.getLogger(__name__)

INDEX_COLUMNS = (
    "path", "duration", "frames", "sample_rate", "channels", "size", "mtime_ns", "error",
)  # fmt: skip


@dataclass
class IndexEntries:
    """Rows of an index, one per audio file found (usable or not), as columns."""

    paths: PathColumn
    size: np.ndarray
    mtime_ns: np.ndarray
    frames: np.ndarray
    sample_rate: np.ndarray
    channels: np.ndarray
    errors: dict[int, str]

    def __len__(self) -> int:
        return len(self.paths)

    def usable(self) -> np.ndarray:
        """Row numbers of the usable files."""
        ok = (self.frames > 0) & (self.sample_rate > 0)
        if self.errors:
            ok[list(self.errors)] = False
        return np.flatnonzero(ok)


def index_file(index_dir: str | os.PathLike, root: str | os.PathLike) -> Path:
    """Where the index of folder ``root`` lives in ``index_dir``: named after the folder, with
    a hash of its absolute path so several sources can share one ``index_dir``."""
    absolute = os.path.abspath(root)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(absolute.rstrip(os.sep)) or "root")
    digest = hashlib.sha1(os.fsencode(absolute)).hexdigest()[:10]
    return Path(index_dir) / f"{name}-{digest}.csv"


def target_frames(frames: np.ndarray, rates: np.ndarray, target: int) -> np.ndarray:
    """Lengths at ``target`` Hz of files of ``frames`` samples at ``rates`` Hz, as
    :attr:`escx.audio.AudioInfo.target_frames` counts them (resampling rounds up)."""
    frames = np.asarray(frames, dtype=np.int64)
    rates = np.maximum(np.asarray(rates, dtype=np.int64), 1)
    g = np.gcd(rates, target)
    up, down = target // g, rates // g
    return np.where(rates == target, frames, np.ceil(frames * up / down)).astype(np.int64)


def write_index(path: Path, entries: IndexEntries) -> None:
    """Write ``entries`` as a CSV manifest, atomically (a reader sees the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(INDEX_COLUMNS)
        for i in range(len(entries)):
            rate, frames = int(entries.sample_rate[i]), int(entries.frames[i])
            error = entries.errors.get(i, "")
            usable = not error and rate > 0
            writer.writerow((
                entries.paths[i],
                f"{frames / rate:.6f}" if usable else "",
                frames if usable else "",
                rate if usable else "",
                int(entries.channels[i]) if usable else "",
                int(entries.size[i]),
                int(entries.mtime_ns[i]),
                error,
            ))  # fmt: skip


def _previous(path: Path) -> dict[str, tuple[int, IndexEntries]] | None:
    """The rows of an existing index by path, or None (absent, or unreadable: rebuilt)."""
    if not path.is_file():
        return None
    try:
        rows = read_manifest(path)
    except (ManifestError, OSError, UnicodeDecodeError) as err:
        log.warning("data index %s cannot be read (%s); rebuilding it", path, err)
        return None
    entries = IndexEntries(rows.paths, rows.size, rows.mtime_ns, rows.frames, rows.sample_rate,
                           rows.channels, rows.errors)  # fmt: skip
    return {p: (i, entries) for i, p in enumerate(rows.paths)}


@dataclass
class _Plan:
    found: list  # FoundFile rows of the walk, sorted
    reuse: list[tuple[int, IndexEntries] | None]  # per found file: its unchanged old row
    todo: list[str]  # paths to check
    stale: bool  # the index on disk differs from the folder (files checked, gone or no index)


def _plan(root: Path, path: Path, hint: str) -> _Plan:
    if not root.is_dir():
        raise NoUsableAudioError(f"no usable audio in {root}: audio folder not found; {hint}")
    try:
        found = find_files_with_stats(root, is_audio_file)
    except ScanError as err:
        raise NoUsableAudioError(f"no usable audio in {root}: {err}; {hint}") from None
    previous = _previous(path)
    reuse: list[tuple[int, IndexEntries] | None] = []
    todo = []
    for file in found:
        old = previous.get(os.path.abspath(file.path)) if previous else None
        if old is not None:
            i, rows = old
            if rows.size[i] != file.size or rows.mtime_ns[i] != file.mtime_ns:
                old = None
        reuse.append(old)
        if old is None:
            todo.append(file.path)
    kept = len(found) - len(todo)
    return _Plan(found, reuse, todo, previous is None or bool(todo) or kept != len(previous))


def _assemble(plan: _Plan, probes: list[Probe]) -> IndexEntries:
    n = len(plan.found)
    columns = {key: np.zeros(n, dtype=np.int64) for key in ("size", "mtime_ns", "frames",
                                                            "sample_rate", "channels")}  # fmt: skip
    errors: dict[int, str] = {}
    checked = iter(probes)
    for i, (file, old) in enumerate(zip(plan.found, plan.reuse, strict=True)):
        columns["size"][i], columns["mtime_ns"][i] = file.size, file.mtime_ns
        if old is not None:
            j, rows = old
            frames, rate, channels = rows.frames[j], rows.sample_rate[j], rows.channels[j]
            error = rows.errors.get(j, "")
        else:
            rate, channels, frames, error = next(checked)
        columns["frames"][i], columns["sample_rate"][i], columns["channels"][i] = (
            frames,
            rate,
            channels,
        )
        if error:
            errors[i] = error
    paths = PathColumn.from_strings(os.path.abspath(file.path) for file in plan.found)
    return IndexEntries(paths, **columns, errors=errors)


def table_from_entries(
    entries: IndexEntries, sample_rate: int, label: str, hint: str
) -> AudioTable:
    """The usable rows as an :class:`AudioTable` at ``sample_rate``; one counted warning for
    the unusable ones.

    Raises:
        NoUsableAudioError: no row is usable.
    """
    usable = entries.usable()
    if len(usable) == 0:
        first = next(iter(entries.errors.values()), None)
        raise NoUsableAudioError(
            f"no usable audio in {label}: 0 of {len(entries)} files readable"
            + (f" (first: {first})" if first else "")
            + f"; {hint}"
        )
    skipped = len(entries) - len(usable)
    if skipped:
        first = next(iter(entries.errors.values()), "unknown")
        log_once_per_process(
            logging.WARNING,
            f"{label}: skipped {skipped} of {len(entries)} files (unreadable or empty): "
            f"first: {first}",
        )
    frames = target_frames(entries.frames[usable], entries.sample_rate[usable], sample_rate)
    return AudioTable(entries.paths.take(usable), frames)


def indexed_folder(
    root: str | os.PathLike,
    path: Path,
    sample_rate: int,
    workers: int,
    label: str,
    hint: str = "check the path",
) -> AudioTable:
    """The usable audio files below ``root``, reusing and updating the index at ``path``.

    Must be called by every rank of a distributed run (it is collective).

    Args:
        root: the source folder.
        path: the index file (created or updated).
        sample_rate: the rate the data is read at (lengths are counted at it).
        workers: processes per rank that check new files.
        label: the source's name in messages.
        hint: what to do when nothing is usable.

    Raises:
        NoUsableAudioError: the folder is missing or holds no usable audio.
    """
    group = RankGroup()
    plan = None
    if group.rank == 0:
        try:
            plan = _plan(Path(root), path, hint)
            outcome: tuple[str, object] = ("ok", plan.todo)
        except (ValueError, OSError) as err:
            outcome = ("error", err)
    else:
        outcome = ("ok", None)
    kind, todo = group.broadcast(outcome)
    if kind == "error":
        raise todo  # type: ignore[misc]
    probes = probe_shared(todo, group, workers, label)  # type: ignore[arg-type]

    def finish() -> AudioTable:
        assert plan is not None
        entries = _assemble(plan, probes)
        if plan.stale and len(entries):
            try:
                write_index(path, entries)
            except OSError as err:  # the index only saves time: train without it
                log.warning("could not write the data index %s (%s)", path, err)
        log_once_per_process(
            logging.INFO,
            f"{label}: {len(entries):,} audio files, {len(entries) - len(todo):,} unchanged "
            f"since the index {path}, {len(todo):,} checked",
        )
        return table_from_entries(entries, sample_rate, label, hint)

    return group.run_on_zero(finish)
