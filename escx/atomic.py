"""Atomic file output: every file escx writes appears whole or not at all.

A file is written to a temporary file beside its target, flushed to disk and renamed over the
target (``os.replace`` is atomic within a folder), so a crash, a full disk or a kill never leaves a
partial file at the target nor replaces its old content. Two writers of the same target both
succeed and the target is one of their complete files.

A process killed with SIGKILL cannot remove its temporary file. Temporary files are therefore
named after their writer (``.<name>.<pid>-<host>.<random>.tmp<suffix>``), and each new write to
a target first removes the temporaries of that target whose writer on this host is no longer
alive. Temporaries of other hosts (a shared file system) are left alone.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _pattern(target: Path, suffix: str) -> re.Pattern[str]:
    name = re.escape(target.name)
    return re.compile(rf"^\.{name}\.(\d+)-{re.escape(_HOST)}\.[^.]+\.tmp{re.escape(suffix)}$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(target: str | os.PathLike, suffix: str = "") -> list[Path]:
    """Delete temporary files of ``target`` left by writers that died; returns what was removed."""
    target = Path(target)
    pattern, removed = _pattern(target, suffix), []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:  # removed by someone else meanwhile, or not ours to remove
                pass
    return removed


def new_file_mode(path: Path) -> int:
    """An existing file's mode (kept on replace), else what ``open()`` would give a new file."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    # Reading the umask means setting it for an instant; a file another thread creates in that
    # instant would get mode 0666.
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    Args:
        path: the target file; its folder must exist.
        suffix: extension kept at the end of the temporary name (for writers that pick the format
            from the name, such as soundfile).

    Example:
        ``with atomic_path("out.json") as tmp: tmp.write_text(text)``
    """
    path = Path(path)
    remove_stale_temporaries(path, suffix)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-{_HOST}.", suffix=f".tmp{suffix}", dir=path.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.chmod(tmp, new_file_mode(path))  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
