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
        self.ints = {key: [] for key in INT_KEYS}
        self.durations: list[float] = []
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
            return np.asarray(self.ints[key], dtype=np.int64)

        return ManifestRows(
            self.paths.build(),
            np.asarray(self.durations, dtype=np.float64),
            *(ints(key) for key in INT_KEYS),
            errors=self.errors,
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


def _number(text: str, convert: Any, key: str, where: Any) -> Any:
    try:
        value = convert(text)
    except ValueError:
        value = -1
    if not value >= 0 or value >= 2**62:  # NaN too
        raise ManifestError(f"{where()}: {key} must be a number >= 0, got {text!r}")
    return value


def _index_rows(reader: Any, path: Path, base: str, columns: _Columns) -> None:
    """The rows of an escx data index, the fast way (a million in seconds): the columns are
    known, so each row is eight strings converted in place, without a dict per row."""
    paths, durations, ints, errors = columns.paths, columns.durations, columns.ints, columns.errors
    frames, rates, channels = ints["frames"], ints["sample_rate"], ints["channels"]
    sizes, mtimes = ints["size"], ints["mtime_ns"]
    nan, isabs, join, count = math.nan, os.path.isabs, os.path.join, len(INDEX_COLUMNS)
    for i, values in enumerate(reader):
        if not values:
            continue
        n = len(paths)
        where = lambda i=i: f"{path} line {i + 2}"  # noqa: E731 - built only for an error
        if len(values) != count or not values[0]:
            raise ManifestError(f"{where()}: expected {count} values starting with a file path")
        if n >= MAX_MANIFEST_ROWS:
            _count(columns, path)
        name = values[0]
        if len(name) > MAX_PATH_BYTES // 4 and len(os.fsencode(name)) > MAX_PATH_BYTES:
            raise ManifestError(f"{where()}: the path is longer than {MAX_PATH_BYTES} bytes")
        paths.append(name if isabs(name) else join(base, name))
        durations.append(_number(values[1], float, "duration", where) if values[1] else nan)
        frames.append(_number(values[2], int, "frames", where) if values[2] else -1)
        rates.append(_number(values[3], int, "sample_rate", where) if values[3] else -1)
        channels.append(_number(values[4], int, "channels", where) if values[4] else -1)
        sizes.append(_number(values[5], int, "size", where) if values[5] else -1)
        mtimes.append(_number(values[6], int, "mtime_ns", where) if values[6] else -1)
        if values[7]:
            errors[n] = values[7]


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
