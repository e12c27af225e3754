"""Training sources read as compact tables: a folder through its index, a manifest directly.

A manifest row that states its file's length (``duration``, or an escx index's ``frames`` and
``sample_rate``) is trusted without opening the file, so a manifest of a million files loads in
seconds; rows without a length are checked in parallel across ranks and workers. Trusting rows
means a file may have moved since the manifest was written: a sample of the rows is looked up
first, and a manifest none of whose sampled files exists (the corpus moved, or the manifest was
written on another machine) is refused in one line before training starts. Files missing or
broken later are skipped and counted when read (:mod:`escx.data.datasets`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from escx.data.index import target_frames
from escx.data.items import NoUsableAudioError, log_once_per_process
from escx.data.manifest import read_manifest
from escx.data.probe import RankGroup, probe_shared
from escx.data.table import AudioTable

# Rows looked up before a manifest's stated lengths are trusted: enough to tell a moved corpus
# (none found) from a few deleted files, cheap on a network file system (one stat each).
EXISTENCE_SAMPLE = 64


def _check_files_exist(manifest: Path, paths, trusted: np.ndarray, hint: str) -> None:
    if len(trusted) == 0:
        return
    picks = np.unique(np.linspace(0, len(trusted) - 1, min(EXISTENCE_SAMPLE, len(trusted))))
    missing = [paths[int(trusted[int(k)])] for k in picks]
    missing = [p for p in missing if not os.path.isfile(p)]
    if len(missing) == len(picks):
        raise NoUsableAudioError(
            f"{manifest}: none of the {len(picks)} files looked up among its {len(paths):,} "
            f"rows exists (first: {missing[0]}): the files moved or the manifest was written "
            "elsewhere; rebuild it (escx data index DIR -o FILE.csv) or pass the folder"
            f"; {hint}"
        )
    if missing:
        log_once_per_process(
            logging.WARNING,
            f"{manifest}: {len(missing)} of {len(picks)} files looked up are missing "
            f"(first: {missing[0]}); missing files are skipped and counted when read",
        )


def _plan(manifest: Path, sample_rate: int, hint: str):
    if not manifest.is_file():
        raise NoUsableAudioError(f"no usable audio in {manifest}: manifest not found; {hint}")
    rows = read_manifest(manifest)
    exact = (rows.frames > 0) & (rows.sample_rate > 0)
    lengths = np.full(len(rows), -1, dtype=np.int64)
    lengths[exact] = target_frames(rows.frames[exact], rows.sample_rate[exact], sample_rate)
    timed = ~exact & (rows.duration > 0)
    lengths[timed] = np.round(rows.duration[timed] * sample_rate).astype(np.int64)
    bad = np.zeros(len(rows), dtype=bool)
    if rows.errors:
        bad[list(rows.errors)] = True
    lengths[bad] = 0
    _check_files_exist(manifest, rows.paths, np.flatnonzero(lengths > 0), hint)
    todo = np.flatnonzero(lengths < 0)
    return rows, lengths, todo


def manifest_table(
    manifest: str | os.PathLike,
    sample_rate: int,
    workers: int,
    label: str,
    hint: str = "check the path",
) -> AudioTable:
    """The usable files of a CSV/JSONL manifest (an escx index included) at ``sample_rate``.

    Must be called by every rank of a distributed run (it is collective).

    Raises:
        NoUsableAudioError: the manifest is missing, names no usable file, or none of the files
            looked up exists.
        ManifestError: a malformed row.
    """
    group = RankGroup()
    path = Path(manifest)
    plan = None
    outcome: tuple[str, object] = ("ok", None)
    if group.rank == 0:
        try:
            plan = _plan(path, sample_rate, hint)
            outcome = ("ok", [plan[0].paths[int(i)] for i in plan[2]])
        except (ValueError, OSError) as err:
            outcome = ("error", err)
    kind, todo = group.broadcast(outcome)
    if kind == "error":
        raise todo  # type: ignore[misc]
    probes = probe_shared(todo, group, workers, label)  # type: ignore[arg-type]

    def finish() -> AudioTable:
        assert plan is not None
        rows, lengths, todo_rows = plan
        errors = dict(rows.errors)
        for row, probe in zip(todo_rows, probes, strict=True):
            if probe.error:
                errors[int(row)] = probe.error
                lengths[row] = 0
            else:
                lengths[row] = target_frames(
                    np.array([probe.frames]), np.array([probe.sample_rate]), sample_rate
                )[0]
        usable = np.flatnonzero(lengths > 0)
        if len(usable) == 0:
            first = next(iter(errors.values()), None)
            raise NoUsableAudioError(
                f"no usable audio in {label}: 0 of {len(rows)} files readable"
                + (f" (first: {first})" if first else "")
                + f"; {hint}"
            )
        if len(usable) < len(rows):
            first = next(iter(errors.values()), "a length of 0 s")
            log_once_per_process(
                logging.WARNING,
                f"{label}: skipped {len(rows) - len(usable)} of {len(rows)} files (unreadable "
                f"or empty): first: {first}",
            )
        paths = rows.paths if len(usable) == len(rows) else rows.paths.take(usable)
        return AudioTable(paths, lengths[usable])

    return group.run_on_zero(finish)
