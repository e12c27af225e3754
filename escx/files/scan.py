"""Recursive folder scans that always finish and list every file once.

A scan follows symbolic links (data folders are often assembled from links to corpora) but
enters each real folder, identified by ``(st_dev, st_ino)``, only once: a link back to a parent
(a loop) is skipped instead of being walked until the path grows too long, and a folder reached
by two links is listed once. A file reached by several paths (links, hard links) is listed once,
under its real path when it has one inside the scanned folder. Only regular files are listed: a
FIFO named ``x.wav`` would block whoever reads it, a dangling link cannot be read; both are
skipped with one warning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

# A real folder tree this deep is not a data set; stopping with a clear error beats a scan that
# grinds through a generated or hostile tree (link loops cannot cause it: each folder is entered
# once).
MAX_SCAN_DEPTH = 64


class ScanError(ValueError):
    """A folder that cannot be scanned; the message is one line saying what to do."""


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _entry_name(entry: os.DirEntry) -> str:
    return entry.name


class FoundFile(NamedTuple):
    """A file found by :func:`find_files_with_stats`: its path and what ``stat`` said of it."""

    path: str
    size: int
    mtime_ns: int


def find_files(root: str | os.PathLike, accept: Callable[[str], bool]) -> list[Path]:
    """Regular files under folder ``root`` whose names ``accept`` takes, recursively, sorted.

    The paths of :func:`find_files_with_stats`, which has the details.
    """
    return [Path(found.path) for found in find_files_with_stats(root, accept)]


def find_files_with_stats(
    root: str | os.PathLike, accept: Callable[[str], bool]
) -> list[FoundFile]:
    """Regular files under folder ``root`` whose names ``accept`` takes, with size and mtime.

    The real folder tree is walked first and folders reached only through links after it, so a
    file is listed under its real path when it has one inside ``root``. Hidden files and folders
    (names starting with ``.``) are skipped; folders that cannot be read are skipped with a
    warning.

    Args:
        root: an existing folder.
        accept: takes a file name (not a path), returns whether to list it.

    The size and modification time come from the ``stat`` the walk makes anyway (no file is
    opened), so a data index can tell which files changed since it was written.

    Returns:
        Paths under ``root`` (as spelled through ``root``, links not resolved) as strings, with
        their size and mtime (of the file a link points to), sorted by path.

    Raises:
        ScanError: the tree is deeper than :data:`MAX_SCAN_DEPTH` folders.
    """
    root = Path(root)
    seen_dirs: set[tuple[int, int]] = set()
    # File id (st_dev and st_ino in one int: a tuple costs three objects a file, and a million
    # files are scanned) -> the file; the ids of files so far reached only through a link.
    found: dict[int, FoundFile] = {}
    via_links: set[int] = set()
    skipped: list[str] = []
    unreadable: list[str] = []
    # (folder, depth, reached through a link); linked folders wait until the real tree is done.
    real: list[tuple[Path, int, bool]] = [(root, 0, False)]
    linked: deque[tuple[Path, int, bool]] = deque()
    while real or linked:
        folder, depth, via_link = real.pop() if real else linked.popleft()
        try:
            info = os.stat(folder)
        except OSError as error:
            unreadable.append(f"{folder} ({error.strerror})")
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            continue  # a loop, or a folder reached before by another path
        seen_dirs.add((info.st_dev, info.st_ino))
        if depth > MAX_SCAN_DEPTH:
            raise ScanError(
                f"{root} has folders nested more than {MAX_SCAN_DEPTH} deep (at {folder}); "
                "point escx at the folder that holds the data"
            )
        try:
            entries = sorted(os.scandir(folder), key=_entry_name)
        except OSError as error:
            unreadable.append(f"{folder} ({error.strerror})")
            continue
        subfolders: list[tuple[Path, int, bool]] = []
        for entry in entries:
            name = entry.name
            if _is_hidden(name):
                continue
            wanted = accept(name)
            try:
                # Only folders and wanted files need a stat (``is_dir`` reads the entry's type
                # without one, except for links); both follow links.
                if not wanted and not entry.is_dir():
                    continue
                info = entry.stat()
                link = via_link or entry.is_symlink()
            except OSError:  # a dangling link or a loop of links
                if wanted:
                    skipped.append(entry.path)
                continue
            if stat.S_ISDIR(info.st_mode):
                subfolders.append((Path(entry.path), depth + 1, link))
            elif wanted:
                if not stat.S_ISREG(info.st_mode):
                    skipped.append(entry.path)
                    continue
                key = info.st_dev << 64 | info.st_ino
                if key not in found or (key in via_links and not link):
                    found[key] = FoundFile(entry.path, info.st_size, info.st_mtime_ns)
                    (via_links.add if link else via_links.discard)(key)
        linked.extend(sub for sub in subfolders if sub[2])  # a queue: name order
        real.extend(sub for sub in reversed(subfolders) if not sub[2])  # a stack: name order
    if skipped:
        log.warning(
            "skipped %d entr%s under %s that %s not a regular file (FIFO, device, socket, "
            "dangling link or loop of links), e.g. %s",
            len(skipped),
            "y" if len(skipped) == 1 else "ies",
            root,
            "is" if len(skipped) == 1 else "are",
            sorted(skipped)[0],
        )
    if unreadable:
        log.warning(
            "could not read %d folder(s) under %s, e.g. %s", len(unreadable), root, unreadable[0]
        )
    # In the order of Path objects (component by component), without building a Path per file:
    # NUL sorts below every character a name can hold, as the end of a component does.
    return sorted(found.values(), key=lambda f: f.path.replace(os.sep, "\0"))
