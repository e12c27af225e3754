"""What a training source becomes before the dataset is built: a table of checked files (a
folder through its data index, a manifest read directly) or a set of counted shards.

Everything here is collective in a distributed run: rank 0 plans, every rank checks a share,
and every rank gets the same result (:mod:`escx.data.probe`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from escx.data.index import index_file, indexed_folder
from escx.data.shards import ShardSet, checked_shards, shard_index_file
from escx.data.sources import SourceSpec
from escx.data.table import AudioTable
from escx.data.table_sources import manifest_table


@dataclass(frozen=True)
class TrainSources:
    """How the data module reads training sources.

    Attributes:
        sample_rate: the rate the data is read at.
        index_dir: where data indexes are kept; None keeps none.
        workers: processes (threads for shards) per rank that check files.
        hint: what to do when a source holds no usable audio.
    """

    sample_rate: int
    index_dir: str | os.PathLike | None
    workers: int
    hint: str

    def table(self, spec: SourceSpec) -> AudioTable | None:
        """A folder through its data index, a manifest read as a table; None for other forms
        (and for folders when no index is kept: they are checked file by file as before)."""
        label = str(spec)
        if spec.kind == "manifest":
            return manifest_table(spec.location, self.sample_rate, self.workers, label, self.hint)
        if spec.kind != "folder" or self.index_dir is None or not Path(spec.location).is_dir():
            return None
        path = index_file(self.index_dir, spec.location)
        return indexed_folder(spec.location, path, self.sample_rate, self.workers, label, self.hint)

    def shards(self, spec: SourceSpec) -> ShardSet:
        """The shards of a shard source, checked and counted (the counts kept in the index)."""
        index = None
        if self.index_dir is not None:
            index = shard_index_file(self.index_dir, spec.location)
        return checked_shards(spec.location, index, self.workers, str(spec))
