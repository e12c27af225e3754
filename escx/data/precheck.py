"""Checks of the training source made when the data module is built, before the trainer exists.

The data module is built before the trainer, so an error raised here is escx's one line on
stderr, with nothing written; the thorough checks (every file, every tar header) run later, in
``setup``, once the ranks of a distributed run can share them. These are the cheap ones that
catch the usual mistakes: a shard pattern that names too many files or a missing file, a shard
that is not a tar or is cut short (:func:`~escx.data.shard_files.quick_check_shard`), a ``pipe:``
source without ``$ESCX_ALLOW_PIPE=1``, and a manifest whose files moved (its first rows are
looked up).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from escx.data.items import NoUsableAudioError
from escx.data.manifest import ManifestError, bounded_lines
from escx.data.shard_files import ShardError, expand_shards, quick_check_shard
from escx.data.sources import SourceSpec

FIRST_ROWS = 64  # rows of a manifest looked up before training is set up


def _first_paths(manifest: Path) -> list[str]:
    """The paths of the first rows of a CSV/JSONL manifest (absolute), without reading it all."""
    import csv
    import json

    from escx.data.manifest import PATH_KEYS

    base = os.path.dirname(os.path.abspath(manifest))
    paths = []
    with open(manifest, encoding="utf-8-sig", newline="") as handle:
        lines = bounded_lines(handle, manifest)
        if manifest.suffix.lower() == ".csv":
            rows = csv.DictReader(lines)
        else:
            rows = (json.loads(line) for line in lines if line.strip())
        for row in itertools.islice(rows, FIRST_ROWS):
            key = next((k for k in PATH_KEYS if isinstance(row, dict) and row.get(k)), None)
            if key is not None:
                path = os.path.expanduser(str(row[key]).strip())
                paths.append(path if os.path.isabs(path) else os.path.join(base, path))
    return paths


def precheck_train_source(spec: SourceSpec) -> None:
    """Refuse a training source that cannot work, cheaply.

    Raises:
        ShardError: a bad shard pattern, a missing, non-tar or truncated local shard, a
            ``pipe:`` source that is not allowed.
        NoUsableAudioError: a manifest none of whose first rows names an existing file.
    """
    if spec.kind == "shards":
        problems = [p for p in (quick_check_shard(u) for u in expand_shards(spec.location)) if p]
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ShardError(problems[0] + more)
    elif spec.kind == "manifest" and Path(spec.location).is_file():
        try:
            paths = _first_paths(Path(spec.location))
        except (ValueError, OSError, ManifestError):
            return  # malformed: read in full at setup, which names the line
        if paths and not any(os.path.isfile(p) for p in paths):
            raise NoUsableAudioError(
                f"{spec.location}: none of the files its first {len(paths)} rows name exists "
                f"(first: {paths[0]}): the files moved or the manifest was written elsewhere; "
                "rebuild it (escx data index DIR -o FILE.csv) or pass the folder"
            )
