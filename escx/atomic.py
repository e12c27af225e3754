"""Atomic file output: every file escx writes appears whole or not at all.

A file is written to a temporary file beside its target, flushed to disk and renamed over the
target (``os.replace`` is atomic within a folder), so a crash, a full disk or a kill never leaves a
partial file at the target nor replaces its old content. Two writers of the same target both
succeed and the target is one of their complete files.

A process killed with SIGKILL cannot remove its temporary file. Temporary files are therefore
named after their writer (``.<name>.<pid>-<host>.<random>.tmp<suffix>``), and each new write to
a target first removes the temporaries of that target whose writer on this host is no longer
alive. Temporaries of other hosts (a shared file system) are left alone.

Only regular files are replaced (:mod:`escx.files.targets`): a symbolic link keeps being a link
and its target is replaced (the temporary file lives beside the target, so the rename stays within
one folder); a FIFO or character device (``/dev/null``, ``/dev/full``, a pipe to a player) is
written directly, never renamed over, removed or chmod-ed; a directory, block device, socket,
dangling link or loop of links is refused before anything is written.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from escx.files.targets import output_target

# This host's name as it may appear in a file name: temporaries and staging folders carry their
# writer's host and pid, so that only leftovers of dead writers on this host are ever removed.
HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _pattern(target: Path, suffix: str) -> re.Pattern[str]:
    name = re.escape(target.name)
    return re.compile(rf"^\.{name}\.(\d+)-{re.escape(HOST)}\.[^.]+\.tmp{re.escape(suffix)}$")


def writer_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs (its leftovers must then stay)."""
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
        if match and int(match.group(1)) != os.getpid() and not writer_alive(int(match.group(1))):
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


def _check_still_a_file(path: Path) -> None:
    """Refuse to rename over ``path`` if it stopped being a regular file while we wrote (a FIFO
    or device made there meanwhile must not be replaced either)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(
            f"cannot write {path}: it stopped being a regular file while escx was writing it; "
            "nothing was replaced"
        )


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a path to write; on success it replaces ``path``, on failure it is removed.

    For a FIFO or character device the yielded path is ``path`` itself: the data goes straight
    in, and an OSError while writing (``/dev/full``: no space left on device) becomes a one-line
    ``cannot write PATH: reason``.

    Args:
        path: the target file; its folder must exist.
        suffix: extension kept at the end of the temporary name (for writers that pick the format
            from the name, such as soundfile).

    Raises:
        OSError: ``path`` is a directory, block device, socket, dangling link or link loop.

    Example:
        ``with atomic_path("out.json") as tmp: tmp.write_text(text)``
    """
    target = output_target(path)
    if target.direct:
        try:
            yield target.path
        except OSError as error:
            if error.errno is None:  # already a message of ours
                raise
            raise OSError(f"cannot write {target.path}: {error.strerror}") from None
        return
    path = target.real  # a link's target is replaced; the link stays
    remove_stale_temporaries(path, suffix)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}-{HOST}.", suffix=f".tmp{suffix}", dir=path.parent
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
        _check_still_a_file(path)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
