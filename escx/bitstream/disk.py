"""``.escx`` files on disk: atomic writes, whole reads, and reading only the header."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from escx.atomic import atomic_path
from escx.bitstream.header import HEADER_SIZE, EscxHeader, check_file_size, read_header

logger = logging.getLogger(__name__)


def write_escx(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a complete file or, on any failure, no new file.

    Writes a temporary file in the same directory, fsyncs it and renames it over ``path``, so a
    crash or full disk never leaves a partial ``.escx`` file (an existing file stays untouched).

    Raises:
        BitstreamError: ``data`` is not a valid ``.escx`` file.
        FileNotFoundError: the target directory does not exist.
    """
    read_header(data)  # refuse to write something that could not be read back
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {path.parent} does not exist; create it first")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    logger.debug("wrote %d bytes to %s", len(data), path)


def read_escx(path: str | os.PathLike[str]) -> bytes:
    """Read the raw bytes of an ``.escx`` file (verify them with
    :func:`~escx.bitstream.decode_bitstream`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path")
    return path.read_bytes()


def peek_header(path: str | os.PathLike[str]) -> EscxHeader:
    """Parse the header of an ``.escx`` file and check the file's size, without reading the rest.

    Raises:
        BitstreamError: any header error, or a file size other than the header's.
        FileNotFoundError: no such file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file; check the path")
    with open(path, "rb") as file:
        header = EscxHeader.from_bytes(file.read(HEADER_SIZE))
    check_file_size(header, path.stat().st_size)
    return header
