"""Where audio comes from: a folder, a CSV/JSONL manifest, or a Hugging Face dataset.

A source is named by one string (the ``--data.train`` / ``--data.val`` / ``--data.test`` value):

* ``path/to/folder``: every .wav/.flac/.ogg/.mp3 below it, recursively, in sorted order.
* ``path/to/list.csv`` or ``path/to/list.jsonl``: a manifest with a ``path`` column/key (also
  accepted: ``audio_filepath`` as in NeMo manifests, or ``file``) and an optional ``duration`` in
  seconds (or ``seconds``). Relative paths are resolved against the manifest's folder.
* ``shards/train-{000000..000099}.tar`` or ``pipe:COMMAND``: WebDataset tar shards, local
  files or the output of a command, brace patterns expanded (:mod:`escx.data.shards`).
* ``hf:NAME[:SPLIT]``: a Hugging Face dataset, NAME being a hub id (``openslr/librispeech_asr``)
  or a local folder written by ``save_to_disk``; SPLIT defaults to the role's usual split
  (``train``, ``validation``, ``test``). See :mod:`escx.data.hf`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from escx.audio import AudioError, find_audio_files
from escx.data.items import FileItem, NoUsableAudioError
from escx.data.manifest import (  # noqa: F401 - ManifestError and the keys are re-exported
    DURATION_KEYS,
    PATH_KEYS,
    ManifestError,
    read_manifest,
)

MANIFEST_SUFFIXES = (".csv", ".jsonl")
HF_PREFIX = "hf:"
PIPE_PREFIX = "pipe:"
SHARD_SUFFIX = ".tar"


@dataclass(frozen=True)
class SourceSpec:
    """A parsed source string.

    Attributes:
        kind: ``"folder"``, ``"manifest"``, ``"shards"`` or ``"hf"``.
        location: the folder, manifest file, shard pattern, hub id or dataset folder.
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
    if spec.startswith(PIPE_PREFIX) or spec.lower().endswith(SHARD_SUFFIX):
        return SourceSpec("shards", spec)
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


def manifest_items(manifest: str | Path, hint: str = "check the path") -> list[FileItem]:
    """The files listed by a CSV or JSONL manifest (:func:`escx.data.manifest.read_manifest`).

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
    rows = read_manifest(path)
    items = []
    for i in range(len(rows)):
        seconds = rows.duration[i]
        frames, rate = rows.frames[i], rows.sample_rate[i]
        if frames > 0 and rate > 0:  # an escx index row: the exact length
            seconds = frames / rate
        items.append(FileItem(rows.paths[i], None if math.isnan(seconds) else float(seconds)))
    return items
