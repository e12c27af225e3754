"""Where audio comes from: a folder, a CSV/JSONL manifest, or a Hugging Face dataset.

A source is named by one string (the ``--data.train`` / ``--data.val`` / ``--data.test`` value):

* ``path/to/folder``: every .wav/.flac/.ogg/.mp3 below it, recursively, in sorted order.
* ``path/to/list.csv`` or ``path/to/list.jsonl``: a manifest with a ``path`` column/key (also
  accepted: ``audio_filepath`` as in NeMo manifests, or ``file``) and an optional ``duration`` in
  seconds (or ``seconds``). Relative paths are resolved against the manifest's folder.
* ``hf:NAME[:SPLIT]``: a Hugging Face dataset, NAME being a hub id (``openslr/librispeech_asr``)
  or a local folder written by ``save_to_disk``; SPLIT defaults to the role's usual split
  (``train``, ``validation``, ``test``). See :mod:`escx.data.hf`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from escx.audio import AudioError, find_audio_files
from escx.data.items import FileItem, NoUsableAudioError

MANIFEST_SUFFIXES = (".csv", ".jsonl")
PATH_KEYS = ("path", "audio_filepath", "file")
DURATION_KEYS = ("duration", "seconds")
HF_PREFIX = "hf:"


class ManifestError(ValueError):
    """A manifest that cannot be parsed; the message names the file and line."""


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source string.

    Attributes:
        kind: ``"folder"``, ``"manifest"`` or ``"hf"``.
        location: the folder, manifest file, hub id or dataset folder.
        split: the Hugging Face split given after ``:``, or None.
    """

    kind: str
    location: str
    split: str | None = None

    def __str__(self) -> str:
        if self.kind == "hf":
            return f"{HF_PREFIX}{self.location}" + (f":{self.split}" if self.split else "")
        return self.location


def parse_source(spec: str) -> SourceSpec:
    """Parse a source string (see the module docstring for the syntax).

    For ``hf:`` the split is what follows the first ``:`` after the name, so it may itself hold a
    slice such as ``train[:100]``.

    Raises:
        ValueError: an empty string or ``hf:`` with no name.
    """
    spec = str(spec).strip()
    if not spec:
        raise ValueError("empty data source: give a folder, a .csv/.jsonl manifest or hf:NAME")
    if spec.startswith(HF_PREFIX):
        name, _, split = spec[len(HF_PREFIX) :].partition(":")
        if not name:
            raise ValueError(f"bad data source {spec!r}: expected hf:NAME[:SPLIT]")
        return SourceSpec("hf", name, split or None)
    if Path(spec).suffix.lower() in MANIFEST_SUFFIXES:
        return SourceSpec("manifest", spec)
    return SourceSpec("folder", spec)


def folder_items(root: str | Path, hint: str = "check the path") -> list[FileItem]:
    """Every audio file below ``root`` (recursive, sorted).

    Raises:
        NoUsableAudioError: the folder does not exist.
    """
    try:
        return [FileItem(p) for p in find_audio_files(root)]
    except AudioError as err:
        raise NoUsableAudioError(f"no usable audio in {root}: {err}; {hint}") from None


def _pick(row: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in row:
            return key
    return None


def _manifest_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) pairs of a CSV (with a header) or a JSON-lines manifest."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [(i + 2, row) for i, row in enumerate(reader)]
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path} line {lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise ManifestError(f"{path} line {lineno}: expected a JSON object per line")
        rows.append((lineno, row))
    return rows


def manifest_items(manifest: str | Path, hint: str = "check the path") -> list[FileItem]:
    """The files listed by a CSV or JSONL manifest.

    Args:
        manifest: a ``.csv`` file with a header row, or a ``.jsonl`` file with one object per line.
            Each row names the file in ``path`` (or ``audio_filepath``, or ``file``), relative to
            the manifest's folder or absolute, and may give its ``duration`` (or ``seconds``).
        hint: what to do when the manifest is missing, appended to that error.

    Raises:
        NoUsableAudioError: the manifest does not exist.
        ManifestError: a row without a path or with a bad duration.
    """
    path = Path(manifest)
    if not path.is_file():
        raise NoUsableAudioError(f"no usable audio in {path}: manifest not found; {hint}")
    items = []
    for lineno, row in _manifest_rows(path):
        key = _pick(row, PATH_KEYS)
        if key is None or not str(row[key] or "").strip():
            raise ManifestError(
                f"{path} line {lineno}: no file path; each row needs a "
                f"{' / '.join(repr(k) for k in PATH_KEYS)} column or key"
            )
        duration = None
        dkey = _pick(row, DURATION_KEYS)
        if dkey is not None and str(row[dkey] if row[dkey] is not None else "").strip():
            try:
                duration = float(row[dkey])
            except (TypeError, ValueError):
                duration = math.nan
            if not math.isfinite(duration) or duration < 0:
                raise ManifestError(
                    f"{path} line {lineno}: {dkey} must be a number of seconds >= 0, "
                    f"got {row[dkey]!r}"
                )
        file = Path(str(row[key]).strip()).expanduser()
        items.append(FileItem(file if file.is_absolute() else path.parent / file, duration))
    return items
