"""Writing WebDataset tar shards from a folder or manifest (``escx data shard``).

Every usable file (checked as for training: :mod:`escx.data.probe`, in parallel) becomes one
sample: ``KEY.<ext>`` holds the file's bytes unchanged (no re-encoding) and ``KEY.json`` its
original path (relative to the source folder), sample rate, channels and length. Files are
shuffled with a seed before writing (``shuffle=False`` keeps the sorted order), so each shard
holds a mix of the corpus and a training stream that reads a few shards at a time still sees
many speakers. A shard is closed once it reaches ``shard_bytes`` (it may exceed it by one file).

The shards are written into a hidden folder beside ``out`` and renamed to ``out`` at the end,
so a failure, Ctrl-C or SIGTERM leaves no partial shard set (``escx.evaluation.staging``).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from escx.audio import find_audio_files
from escx.data.manifest import read_manifest
from escx.data.probe import probe_paths
from escx.data.shard_files import MAX_SHARDS, require_webdataset

log = logging.getLogger(__name__)

# A shard smaller than this is mostly tar headers (a typo such as 1 for 1GB); one larger than
# this cannot be split across workers and takes hours to read once.
MIN_SHARD_BYTES = 100
MAX_SHARD_BYTES = 1_000_000_000_000
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(text: str) -> int:
    """``1GB``, ``500MB``, ``64MiB`` or a byte count -> bytes.

    Raises:
        ValueError: not a size, or outside :data:`MIN_SHARD_BYTES` .. :data:`MAX_SHARD_BYTES`.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"--shard-size {text!r}: give a size such as 1GB, 500MB or 64MiB")
    size = int(float(match.group(1)) * _UNITS[unit])
    if not MIN_SHARD_BYTES <= size <= MAX_SHARD_BYTES:
        raise ValueError(f"--shard-size {text}: give a size from 100B to 1TB")
    return size


@dataclass(frozen=True)
class ShardSummary:
    """What :func:`write_shards` wrote."""

    pattern: str  # the brace pattern naming every shard, for --data.train
    shards: int
    samples: int
    skipped: int
    bytes: int


def _sources(source: Path) -> tuple[list[str], Path]:
    """The candidate files and the folder their ``path`` metadata is relative to."""
    if source.is_dir():
        return [os.fspath(p) for p in find_audio_files(source)], source
    if source.suffix.lower() in (".csv", ".jsonl") and source.is_file():
        return list(read_manifest(source).paths), source.parent
    raise ValueError(f"{source}: give a folder of audio or a .csv/.jsonl manifest to shard")


def write_shards(
    source: str | os.PathLike,
    staging: Path,
    shard_bytes: int,
    prefix: str = "shard",
    seed: int | None = 53,
    workers: int = 1,
) -> ShardSummary:
    """Write the usable audio of ``source`` as tar shards ``<staging>/<prefix>-NNNNNN.tar``.

    A shard's size counts the files' bytes (each file adds about 1 KB of tar headers and JSON).

    Args:
        source: a folder (recursive) or a CSV/JSONL manifest.
        staging: an empty folder to write into (renamed into place by the caller).
        shard_bytes: close a shard once it holds this many bytes.
        prefix: shard file name prefix.
        seed: seed of the shuffle of the file order; None keeps the sorted order.
        workers: processes checking the files.

    Raises:
        ValueError: a bad source, nothing usable, or more than :data:`MAX_SHARDS` shards.
    """
    require_webdataset()
    import webdataset as wds

    source = Path(source)
    paths, base = _sources(source)
    probes = probe_paths(paths, workers, str(source))
    usable = [(path, probe) for path, probe in zip(paths, probes, strict=True) if not probe.error]
    skipped = len(paths) - len(usable)
    if not usable:
        first = next((p.error for p in probes if p.error), "no audio files")
        raise ValueError(f"no usable audio in {source}: 0 of {len(paths)} files ({first})")
    if skipped:
        first = next(p.error for p in probes if p.error)
        log.warning("%s: skipped %d of %d files (unreadable or empty): first: %s", source,
                    skipped, len(paths), first)  # fmt: skip
    total = sum(os.path.getsize(path) for path, _ in usable)
    if total / shard_bytes > MAX_SHARDS:
        raise ValueError(
            f"{total:,} bytes in shards of {shard_bytes:,} bytes would make more than "
            f"{MAX_SHARDS:,} shards; give a larger --shard-size"
        )
    if seed is not None:
        random.Random(seed).shuffle(usable)
    pattern = os.fspath(staging / f"{prefix}-%06d.tar")
    writer = wds.ShardWriter(pattern, maxcount=10**12, maxsize=shard_bytes, verbose=0,
                             encoder=False, mtime=0.0)  # fmt: skip
    try:
        for i, (path, probe) in enumerate(usable):
            key = f"{i:09d}"
            ext = Path(path).suffix.lower().lstrip(".")
            meta = {
                "path": os.path.relpath(path, base),
                "sample_rate": probe.sample_rate,
                "channels": probe.channels,
                "frames": probe.frames,
            }
            with open(path, "rb") as handle:
                data = handle.read()
            writer.write({"__key__": key, ext: data, "json": json.dumps(meta).encode()})
    finally:
        writer.close()
    shards = sorted(staging.glob(f"{prefix}-*.tar"))
    last = len(shards) - 1
    name = f"{prefix}-{{000000..{last:06d}}}.tar" if last > 0 else f"{prefix}-000000.tar"
    return ShardSummary(
        name, len(shards), len(usable), skipped, sum(s.stat().st_size for s in shards)
    )
