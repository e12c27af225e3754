"""Reading CSV and JSON-lines manifests of any size, within bounds, into flat columns.

A manifest names one audio file per row (``path``, or ``audio_filepath`` as in NeMo, or
``file``), optionally with its ``duration`` (or ``seconds``). escx's data index
(:mod:`escx.data.index`) is a CSV manifest with more columns: ``frames``, ``sample_rate``,
``channels`` (the exact length), ``size`` and ``mtime_ns`` (to notice a changed file) and
``error`` (why a file is unusable). Every reader of manifests goes through :func:`read_manifest`,
which streams the file line by line and checks each line's length before parsing it, so a
hostile or broken manifest cannot make escx allocate more than its bounds.
"""

from __future__ import annotations

import csv
import json
import math
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from escx.data.table import PathColumn, PathColumnBuilder

INDEX_COLUMNS = (
    "path", "duration", "frames", "sample_rate", "channels", "size", "mtime_ns", "error",
)  # fmt: skip
PATH_KEYS = ("path", "audio_filepath", "file")
DURATION_KEYS = ("duration", "seconds")
INT_KEYS = ("frames", "sample_rate", "channels", "size", "mtime_ns")

# Bounds checked before anything is allocated for a row. Ten million files is ten times the
# largest corpora escx is built for (LibriLight's ~1.2 M clips after segmentation) and keeps a
# rank's copy of the paths near 1 GB; a row is a path (PATH_MAX is 4096 bytes) and a few numbers.
MAX_MANIFEST_ROWS = 10_000_000
MAX_LINE_CHARS = 65_536
MAX_PATH_BYTES = 4096


class ManifestError(ValueError):
    """A manifest that cannot be parsed; the message names the file and line."""


@dataclass
class ManifestRows:
    """A manifest's rows as columns (``-1`` or NaN where a row leaves a value out).

    Attributes:
        paths: the files, made absolute against the manifest's folder when relative.
        duration: seconds, float64 (NaN when absent).
        frames, sample_rate, channels, size, mtime_ns: int64 (``-1`` when absent).
        errors: row number (0-based) -> why the file is unusable (the index's ``error`` column).
    """

    paths: PathColumn
    duration: np.ndarray
    frames: np.ndarray
    sample_rate: np.ndarray
    channels: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)


class _Columns:
    """Row-by-row collection into compact arrays."""

    def __init__(self) -> None:
        self.paths = PathColumnBuilder()
        # Typed arrays: 8 bytes a value, where a list holds a 28-byte int object per value.
        self.ints = {key: array("q") for key in INT_KEYS}
        self.durations = array("d")
        self.errors: dict[int, str] = {}

    def add(self, path: str, duration: float, ints: dict[str, int], error: str | None) -> None:
        if error:
            self.errors[len(self.paths)] = error
        self.paths.append(path)
        self.durations.append(duration)
        for key in INT_KEYS:
            self.ints[key].append(ints.get(key, -1))

    def build(self) -> ManifestRows:
        def ints(key: str) -> np.ndarray:
            return np.frombuffer(self.ints.pop(key), dtype=np.int64)

        durations = np.frombuffer(self.durations, dtype=np.float64)
        return ManifestRows(
            self.paths.build(), durations, *(ints(key) for key in INT_KEYS), errors=self.errors
        )


def bounded_lines(handle: Any, path: Path) -> Iterator[str]:
    """Lines of ``handle``, refusing one longer than :data:`MAX_LINE_CHARS` before storing it."""
    lineno = 0
    while True:
        line = handle.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        lineno += 1
        if len(line) > MAX_LINE_CHARS:
            raise ManifestError(
                f"{path} line {lineno}: longer than {MAX_LINE_CHARS:,} characters; a manifest "
                "row holds a file path and a few numbers"
            )
        yield line


def _pick(keys: Any, wanted: tuple[str, ...]) -> str | None:
    return next((key for key in wanted if key in keys), None)


def _duration(value: Any, key: str, where: str) -> float:
    if value is None or not str(value).strip():
        return math.nan
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ManifestError(f"{where}: {key} must be a number of seconds >= 0, got {value!r}")
    return seconds


def _int(value: Any, key: str, where: str) -> int:
    if value is None or not str(value).strip():
        return -1
    try:
        number = int(str(value).strip())
    except ValueError:
        number = -2
    if number < 0 or number >= 2**62:
        raise ManifestError(f"{where}: {key} must be a whole number >= 0, got {value!r}")
    return number


def _resolve(text: str, base: str, where: str) -> str:
    text = text.strip()
    if len(text.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise ManifestError(f"{where}: the path is longer than {MAX_PATH_BYTES} bytes")
    text = os.path.expanduser(text)
    return text if os.path.isabs(text) else os.path.join(base, text)


def _add_row(columns: _Columns, row: dict[str, Any], keys: dict[str, str | None], where: str):
    key = keys["path"]
    value = row.get(key) if key is not None else None
    if key is None or not str(value or "").strip():
        raise ManifestError(
            f"{where}: no file path; each row needs a "
            f"{' / '.join(repr(k) for k in PATH_KEYS)} column or key"
        )
    dkey = keys["duration"]
    duration = _duration(row.get(dkey), dkey, where) if dkey is not None else math.nan
    ints = {k: _int(row.get(k), k, where) for k in INT_KEYS if row.get(k) not in (None, "")}
    error = str(row.get("error") or "").strip() or None
    columns.add(_resolve(str(value), keys["base"], where), duration, ints, error)


def _keys(names: Any, base: str) -> dict[str, Any]:
    return {"path": _pick(names, PATH_KEYS), "duration": _pick(names, DURATION_KEYS), "base": base}


def _count(columns: _Columns, path: Path) -> None:
    if len(columns.paths) >= MAX_MANIFEST_ROWS:
        raise ManifestError(
            f"{path}: more than {MAX_MANIFEST_ROWS:,} rows; split the corpus into several "
            "training runs or shards (escx data shard)"
        )


def _index_row_error(values: list[str], where: str) -> ManifestError:
    """The error of an index row that failed the fast conversion, naming the value."""
    if len(values) != len(INDEX_COLUMNS) or not values[0]:
        return ManifestError(f"{where}: expected {len(INDEX_COLUMNS)} values starting with a path")
    for key, text in zip(INDEX_COLUMNS[1:7], values[1:7], strict=True):
        try:
            number = (float if key == "duration" else int)(text) if text else 0
        except ValueError:
            number = -1
        if not number >= 0 or number >= 2**62:  # NaN too
            return ManifestError(f"{where}: {key} must be a number >= 0, got {text!r}")
    return ManifestError(f"{where}: the path is longer than {MAX_PATH_BYTES} bytes")


def _index_rows(reader: Any, path: Path, base: str, columns: _Columns) -> None:
    """The rows of an escx data index, the fast way (a million in seconds): the columns are
    known, so each row is eight strings converted in place, without a dict per row; a value
    that fails is looked at again to name it (:func:`_index_row_error`)."""
    paths, durations, ints, errors = columns.paths, columns.durations, columns.ints, columns.errors
    frames, rates, channels = ints["frames"], ints["sample_rate"], ints["channels"]
    sizes, mtimes = ints["size"], ints["mtime_ns"]
    empty_float, empty = -math.inf, _EMPTY  # stand for empty values until checked
    isabs, join, count = os.path.isabs, os.path.join, len(INDEX_COLUMNS)
    limit = MAX_PATH_BYTES // 4  # characters of up to 4 bytes: longer ones are measured
    i, values = 0, []
    try:
        for i, values in enumerate(reader):  # noqa: B007 - both are read after the loop too
            if not values:
                continue
            n = len(paths)
            name = values[0]
            if len(values) != count or not name or n >= MAX_MANIFEST_ROWS:
                raise ValueError
            if len(name) > limit and len(os.fsencode(name)) > MAX_PATH_BYTES:
                raise ValueError
            paths.append(name if isabs(name) else join(base, name))
            durations.append(float(values[1]) if values[1] else empty_float)
            frames.append(int(values[2]) if values[2] else empty)
            rates.append(int(values[3]) if values[3] else empty)
            channels.append(int(values[4]) if values[4] else empty)
            sizes.append(int(values[5]) if values[5] else empty)
            mtimes.append(int(values[6]) if values[6] else empty)
            if values[7]:
                errors[n] = values[7]
    except (ValueError, OverflowError):
        _count(columns, path)
        raise _index_row_error(values, f"{path} line {i + 2}") from None
    seconds = np.frombuffer(durations, dtype=np.float64)
    _check_column(path, "duration", seconds, np.isfinite(seconds) & (seconds >= 0),
                  seconds == empty_float)  # fmt: skip
    seconds[seconds == empty_float] = math.nan
    for key, column in ints.items():
        values = np.frombuffer(column, dtype=np.int64)
        _check_column(path, key, values, values >= 0, values == empty)
        values[values == empty] = -1


# The value an empty integer field holds while an index is read (then -1, as in ManifestRows).
_EMPTY = -(2**63)


def _check_column(path: Path, key: str, values: np.ndarray, ok: np.ndarray, empty: np.ndarray):
    bad = np.flatnonzero(~(ok | empty))
    if len(bad):
        row = int(bad[0])
        raise ManifestError(f"{path} line {row + 2}: {key} must be a number >= 0, got "
                            f"{values[row].item()!r}")  # fmt: skip


def read_manifest(manifest: str | os.PathLike) -> ManifestRows:
    """Read a ``.csv`` (with a header row) or ``.jsonl`` manifest into columns.

    Relative paths are resolved against the manifest's folder; rows are checked as they are
    read (a path in each, durations and counts that are numbers >= 0).

    Raises:
        FileNotFoundError: the manifest does not exist.
        ManifestError: a malformed row or a bound exceeded; the message names the line.
    """
    path = Path(manifest)
    base = os.path.dirname(os.path.abspath(path))
    columns = _Columns()
    with open(path, encoding="utf-8-sig", newline="") as handle:
        lines = bounded_lines(handle, path)
        if path.suffix.lower() == ".csv":
            reader = csv.reader(lines)
            header = next(reader, None) or []
            if tuple(header) == INDEX_COLUMNS:  # escx's own index: a million rows in seconds
                _index_rows(reader, path, base, columns)
                return columns.build()
            names = {name.strip(): i for i, name in enumerate(header)}
            keys = _keys(names, base)
            for i, values in enumerate(reader):
                if not values:
                    continue
                _count(columns, path)
                row = {name: values[j] for name, j in names.items() if j < len(values)}
                _add_row(columns, row, keys, f"{path} line {i + 2}")
        else:
            for lineno, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{path} line {lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ManifestError(f"{where}: invalid JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise ManifestError(f"{where}: expected a JSON object per line")
                _count(columns, path)
                _add_row(columns, row, _keys(row, base), where)
    return columns.build()
