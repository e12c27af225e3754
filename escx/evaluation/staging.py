"""A report folder written whole or not at all.

:func:`staged_report` hands out a fresh hidden folder beside the report folder ``OUT`` (same file
system) to build the whole report in. On success it swaps the two: an atomic exchange of the
folders where the kernel offers one (Linux ``renameat2(RENAME_EXCHANGE)``), else ``OUT`` is
renamed aside, the staging folder renamed to ``OUT`` and the old one removed (put back if the
second rename fails). On any failure, Ctrl-C or SIGTERM (see :func:`sigterm_raises`) the staging
folder is removed and ``OUT`` is left exactly as it was. Ctrl-C and SIGTERM are held back during
the swap and the clean-up so that neither is cut in half.

Replacing ``OUT`` deletes what it held, so check it first with
:func:`escx.evaluation.target.check_report_target`. A process killed outright (SIGKILL) leaves
its staging folder behind; the next staged report beside it removes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from escx.atomic import HOST, writer_alive

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM arrived (raised by the handler :func:`sigterm_raises` installs).

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in library code does
    not swallow it.
    """


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (a no-op elsewhere),
    so ``finally`` blocks run; the previous handler comes back on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back inside (main thread): they arrive when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _leftover(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"^\.{re.escape(name)}\.escx-(?:staging|replaced)\.(\d+)-{re.escape(HOST)}\.[^.]+$"
    )


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove staging and replaced folders of ``out`` left by escx processes on this host that
    no longer run (killed outright); returns what was removed."""
    pattern, removed = _leftover(out.name), []
    try:
        entries = list(os.scandir(out.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not writer_alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # kernel or file system lacks it
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_in(staging: Path, out: Path) -> None:
    """Make ``staging`` the folder at ``out``; the old ``out`` (if any) is removed."""
    if not os.path.lexists(out):
        os.rename(staging, out)
        _fsync_folder(out.parent)
        return
    if _exchange(staging, out):
        old = staging
    else:
        old = staging.with_name(staging.name.replace(".escx-staging.", ".escx-replaced.", 1))
        os.rename(out, old)
        try:
            os.rename(staging, out)
        except BaseException:
            os.rename(old, out)
            raise
    _fsync_folder(out.parent)
    shutil.rmtree(old, ignore_errors=True)


def _folder_mode(out: Path) -> int:
    """The mode of the folder it replaces, else what ``mkdir`` would give a new folder."""
    with contextlib.suppress(OSError):
        return os.stat(out).st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


@contextlib.contextmanager
def staged_report(out: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder to write a whole report into; on success it becomes ``out``.

    ``out``'s parent must exist and ``out`` must be absent, empty or a report that may be
    replaced (check with :func:`escx.evaluation.target.check_report_target` first). On an
    exception, Ctrl-C or :class:`Terminated` the staging folder is removed and ``out`` is
    untouched.

    Example:
        ``with staged_report(out) as folder: write_report(rows, folder, title)``
    """
    out = Path(out).resolve()
    remove_stale_staging(out)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out.name}.escx-staging.{os.getpid()}-{HOST}.", dir=out.parent)
    )
    try:
        os.chmod(staging, _folder_mode(out))  # mkdtemp makes 0700
        yield staging
        with _signals_held():
            _swap_in(staging, out)
    except BaseException:
        with _signals_held():
            shutil.rmtree(staging, ignore_errors=True)
        raise
