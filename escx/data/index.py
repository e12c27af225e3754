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
import itertools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from escx.atomic import atomic_path
from escx.audio import AUDIO_EXTENSIONS
from escx.data.items import NoUsableAudioError, log_once_per_process
from escx.data.manifest import INDEX_COLUMNS, ManifestError, read_manifest
from escx.data.probe import Probe, RankGroup, probe_shared
from escx.data.table import AudioTable, PathColumn
from escx.files.scan import ScanError, find_files_with_stats

log = logging.getLogger(__name__)


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


def _previous(path: Path) -> IndexEntries | None:
    """The rows of an existing index, or None (absent, or unreadable: rebuilt)."""
    if not path.is_file():
        return None
    try:
        rows = read_manifest(path)
    except (ManifestError, OSError, UnicodeDecodeError) as err:
        log.warning("data index %s cannot be read (%s); rebuilding it", path, err)
        return None
    return IndexEntries(rows.paths, rows.size, rows.mtime_ns, rows.frames, rows.sample_rate,
                        rows.channels, rows.errors)  # fmt: skip


def _is_audio_name(name: str) -> bool:
    """:func:`escx.audio.is_audio_file` for a bare name, without a Path per file (a million
    of them cost seconds)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS


def _absolute(root: Path, paths: list[str]) -> list[str]:
    """``os.path.abspath`` of each path below ``root``, by swapping the root's spelling for its
    absolute path where it prefixes the path (a million ``abspath`` calls cost seconds)."""
    spelled = os.fspath(root) + os.sep
    base = os.path.abspath(root) + os.sep
    cut = len(spelled)
    return [base + p[cut:] if p.startswith(spelled) else os.path.abspath(p) for p in paths]


def _key(path: str) -> str:
    """Sort key of a path, in the order the walk lists files (component by component)."""
    return path.replace(os.sep, "\0")


def _match(paths: PathColumn, previous: IndexEntries | None) -> np.ndarray:
    """Per file, its row in ``previous`` (-1 if none). Both are sorted by :func:`_key` (the index
    is written in that order), so one merge pass finds the rows without a dictionary of a
    million paths; an index in another order (edited by hand) is matched by dictionary."""
    rows = np.full(len(paths), -1, dtype=np.int64)
    if previous is None or len(previous) == 0:
        return rows
    if paths.same_as(previous.paths):  # the usual restart: the same files, row for row
        return np.arange(len(paths), dtype=np.int64)
    keys = (_key(p) for p in previous.paths)
    if any(b < a for a, b in itertools.pairwise(keys)):  # not in walk order: by dictionary
        lookup = {p: k for k, p in enumerate(previous.paths)}
        return np.fromiter((lookup.get(p, -1) for p in paths), np.int64, len(paths))
    old = enumerate(_key(p) for p in previous.paths)
    j, other = next(old)
    for i, key in enumerate(_key(p) for p in paths):  # both sorted by key
        while other is not None and other < key:
            j, other = next(old, (-1, None))
        if other == key:
            rows[i] = j
    return rows


@dataclass
class _Plan:
    paths: PathColumn  # absolute paths of the files the walk found, in its order
    size: np.ndarray
    mtime_ns: np.ndarray
    old: np.ndarray  # per file: its unchanged row in `previous`, or -1
    previous: IndexEntries | None
    todo: list[str]  # paths to check
    stale: bool  # the index on disk differs from the folder (files checked, gone or no index)


def _plan(root: Path, path: Path, hint: str) -> _Plan:
    if not root.is_dir():
        raise NoUsableAudioError(f"no usable audio in {root}: audio folder not found; {hint}")
    try:
        found = find_files_with_stats(root, _is_audio_name)
    except ScanError as err:
        raise NoUsableAudioError(f"no usable audio in {root}: {err}; {hint}") from None
    absolute = _absolute(root, [file.path for file in found])
    # In the order of the absolute paths, which is the walk's (sorted) order unless the root is
    # spelled oddly (".": "./a.wav" sorts before "b/c.wav", "/cwd/a.wav" after "/cwd/b/c.wav").
    keys = [_key(path) for path in absolute]
    order: Any = range(len(found))
    if any(b < a for a, b in itertools.pairwise(keys)):
        order = sorted(order, key=keys.__getitem__)
    del keys
    paths = PathColumn.from_strings(absolute[i] for i in order)
    size = np.fromiter((found[i].size for i in order), np.int64, len(found))
    mtime = np.fromiter((found[i].mtime_ns for i in order), np.int64, len(found))
    del found, absolute, order  # the columns hold it all, in a fraction of the memory
    previous = _previous(path)
    old = _match(paths, previous)
    if previous is not None:
        seen = old >= 0
        same = previous.size[old[seen]] == size[seen]
        same &= previous.mtime_ns[old[seen]] == mtime[seen]
        old[np.flatnonzero(seen)[~same]] = -1  # changed since it was checked
    todo = [paths[int(i)] for i in np.flatnonzero(old < 0)]
    kept = int((old >= 0).sum())
    stale = previous is None or bool(todo) or kept != len(previous)
    return _Plan(paths, size, mtime, old, previous, todo, stale)


def _assemble(plan: _Plan, probes: list[Probe]) -> IndexEntries:
    n = len(plan.paths)
    frames, rate, channels = (np.zeros(n, dtype=np.int64) for _ in range(3))
    errors: dict[int, str] = {}
    kept = np.flatnonzero(plan.old >= 0)
    if plan.previous is not None and len(kept):
        rows = plan.old[kept]
        frames[kept], rate[kept] = plan.previous.frames[rows], plan.previous.sample_rate[rows]
        channels[kept] = plan.previous.channels[rows]
        if plan.previous.errors:
            bad = np.isin(rows, np.fromiter(plan.previous.errors, np.int64))
            for i, row in zip(kept[bad], rows[bad], strict=True):
                errors[int(i)] = plan.previous.errors[int(row)]
    for i, probe in zip(np.flatnonzero(plan.old < 0), probes, strict=True):
        rate[i], channels[i], frames[i] = probe.sample_rate, probe.channels, probe.frames
        if probe.error:
            errors[int(i)] = probe.error
    return IndexEntries(plan.paths, plan.size, plan.mtime_ns, frames, rate, channels, errors)


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
    paths = entries.paths if len(usable) == len(entries) else entries.paths.take(usable)
    return AudioTable(paths, frames)


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
