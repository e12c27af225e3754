"""What writing to an output path means, decided before any work is done.

escx often runs as root in containers, where replacing ``/dev/null`` by a regular file breaks the
machine. So an existing output is classified first (following symbolic links):

==================  ==========================================================================
regular file        replaced atomically: temporary file beside it, then a rename
symbolic link       its final target is replaced atomically; the link itself stays a link
FIFO, char device   written directly, in place (``-o /dev/null`` discards, a FIFO feeds a
                    reader); never renamed over, removed or chmod-ed
missing             created (atomically) if its folder exists
anything else       refused: a directory, a block device, a socket, a link to nothing or a loop
==================  ==========================================================================
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputTarget:
    """Where writing ``path`` lands.

    Attributes:
        path: the path the user gave.
        real: the file that is written or replaced (``path`` with symbolic links resolved).
        direct: True for a FIFO or character device: write into it, never replace it.
        exists: whether ``real`` exists now.
    """

    path: Path
    real: Path
    direct: bool
    exists: bool


def _kind(mode: int) -> str:
    """A node type in words, for messages."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def output_target(path: str | os.PathLike) -> OutputTarget:
    """Classify an output path (see the module docstring).

    Raises:
        IsADirectoryError: the path (or what its link points to) is a directory.
        OSError: a block device, a socket, a symbolic link to nothing or a loop of links, or a
            link the kernel refuses to follow for writing (``fs.protected_symlinks``).
    """
    path = Path(path)
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):  # missing: the folder checks say why
        return OutputTarget(path, path, direct=False, exists=False)
    except OSError as error:  # a loop of links in the folders above it, no permission, ...
        raise _stat_error(path, error) from None
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise OSError(
            f"cannot write {path}: it is a symbolic link to a missing file "
            f"({os.readlink(path)}); remove the link or choose another output"
        ) from None
    except OSError as error:
        raise _stat_error(path, error) from None
    if stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode):
        return OutputTarget(path, path, direct=True, exists=True)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"cannot write {path}: it is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise OSError(
            f"cannot write {path}: it is {_kind(info.st_mode)}; escx writes regular files, "
            "FIFOs and character devices only"
        )
    if not link:
        return OutputTarget(path, path, direct=False, exists=True)
    _probe_link(path)
    return OutputTarget(path, Path(os.path.realpath(path)), direct=False, exists=True)


def _stat_error(path: Path, error: OSError) -> OSError:
    if error.errno == errno.ELOOP:
        return OSError(f"cannot write {path}: it is (or lies under) a loop of symbolic links")
    return OSError(f"cannot write {path}: {error.strerror}")


def _probe_link(path: Path) -> None:
    """Open a link's target for writing (without changing it), so the kernel's rules apply.

    Replacing a link's target means resolving the link here and renaming in the target's folder,
    which the kernel never sees as following a link; opening it does, so a link that
    ``fs.protected_symlinks`` forbids (planted in a shared sticky folder such as /tmp by another
    user) is refused here as it would be for ``echo > link``.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise OSError(
            f"cannot write {path}: the system refuses to write through this symbolic link "
            f"({error.strerror}); write to {os.path.realpath(path)} itself"
        ) from None
    os.close(fd)


def check_output_path(path: str | os.PathLike) -> OutputTarget:
    """Raise a one-line OSError when ``path`` cannot be written (before any work is done).

    Returns:
        How ``path`` will be written (:func:`output_target`).
    """
    target = output_target(path)
    if target.direct:
        return target
    path, parent = target.path, target.real.parent
    if not parent.exists():
        raise FileNotFoundError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise NotADirectoryError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"cannot write {path}: directory {parent} is not writable")
    return target


def check_output_suffix(
    path: str | os.PathLike,
    writes: str,
    allowed: tuple[str, ...] = (),
    refused: tuple[str, ...] = (),
) -> None:
    """Refuse an output file named like another kind of file (``-o x.mp3`` for a bitstream).

    A file's extension decides what later scans take it for (audio folders, ``.escx`` folders),
    so a bitstream named ``.mp3`` would be read as audio. FIFOs and character devices have no
    such role and are exempt; for a symbolic link both its name and its target's are checked.

    Args:
        path: the output path.
        writes: what is written, for the message ("escx compress writes an .escx bitstream").
        allowed: extensions the output must end in (lower case, with the dot); empty: any.
        refused: extensions it must not end in.

    Raises:
        ValueError: a one-line message naming the extensions to use.
        OSError: the output cannot be written at all (:func:`output_target`).
    """
    target = output_target(path)
    if target.direct:
        return
    for name in dict.fromkeys((target.path, target.real)):
        suffix = name.suffix.lower()
        if (allowed and suffix not in allowed) or suffix in refused:
            need = f"end in {' or '.join(allowed)}" if allowed else f"not end in {suffix}"
            link = f" (it is a link to {name})" if name != target.path else ""
            raise ValueError(f"-o {target.path}{link}: {writes}; the output name must {need}")


def is_stdout(path: str | os.PathLike) -> bool:
    """Whether ``path`` is this process's standard output (``-o /dev/stdout`` into a pipe)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no such path, or no real stdout (captured)
        return False


def check_not_input(source: str | os.PathLike, output: str | os.PathLike) -> None:
    """Refuse an output that is the input file itself (same path, a link to it, a hard link).

    Raises:
        ValueError: a one-line message.
    """
    try:
        same = os.path.samefile(source, output)
    except OSError:  # one of them does not exist (or cannot be read): not the same file
        return
    if same:
        raise ValueError(f"-o {output} is the input file {source}; choose another output path")
