"""A shard source checked once: every shard's sample count, kept in the run's data index.

Before training, every shard of a ``--data.train`` shard source is checked
(:func:`escx.data.shard_files.check_shard`) and its audio samples counted; the counts give the
epoch length and let a resumed run jump to its position without reading the shards it already
used (:mod:`escx.data.shard_stream`). The ranks of a distributed run check disjoint shares, in
loader-style worker processes. The result is kept as a CSV beside the folder indexes
(``<index_dir>/shards-<hash>.csv``: ``url,size,mtime_ns,samples``), so a later start
re-checks only local shards whose size or modification time changed (``pipe:`` shards are
trusted once counted). A shard that is not a tar, is cut short, holds no audio or is missing
stops the run before it starts, in one line.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from escx.atomic import atomic_path
from escx.data.items import log_once_per_process
from escx.data.probe import RankGroup
from escx.data.shard_files import MAX_SHARDS, ShardError, ShardInfo, check_shard, expand_shards
from escx.data.sources import PIPE_PREFIX

log = logging.getLogger(__name__)

COLUMNS = ("url", "size", "mtime_ns", "samples")


@dataclass(frozen=True)
class ShardSet:
    """Shards and their audio sample counts, the same on every rank.

    Attributes:
        urls: the shards, in the source's order.
        counts: audio samples in each.
    """

    urls: tuple[str, ...]
    counts: tuple[int, ...]

    @property
    def samples(self) -> int:
        return sum(self.counts)


def shard_index_file(index_dir: str | os.PathLike, spec: str) -> Path:
    """The shard index of ``spec`` in ``index_dir``: named after a hash of the spec (and of the
    working folder, which relative shard paths depend on)."""
    key = spec if spec.startswith(PIPE_PREFIX) else f"{os.getcwd()}\0{spec}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return Path(index_dir) / f"shards-{digest}.csv"


def _read_cache(path: Path | None) -> dict[str, ShardInfo]:
    if path is None or not path.is_file():
        return {}
    cached: dict[str, ShardInfo] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for i, row in enumerate(csv.DictReader(handle)):
                if i >= MAX_SHARDS:
                    break
                info = ShardInfo(int(row["samples"]), int(row["size"]), int(row["mtime_ns"]), "")
                cached[row["url"]] = info
    except (OSError, KeyError, ValueError, csv.Error) as err:
        log.warning("shard index %s cannot be read (%s); checking the shards again", path, err)
        return {}
    return cached


def _write_cache(path: Path, urls: list[str], infos: list[ShardInfo]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            for url, info in zip(urls, infos, strict=True):
                writer.writerow((url, info.size, info.mtime_ns, info.samples))
    except OSError as err:  # the index only saves time
        log.warning("could not write the shard index %s (%s)", path, err)


def _unchanged(url: str, old: ShardInfo | None) -> bool:
    if old is None:
        return False
    if url.startswith(PIPE_PREFIX):
        return True
    try:
        stat = os.stat(url)
    except OSError:
        return False
    return (stat.st_size, stat.st_mtime_ns) == (old.size, old.mtime_ns)


def _check_many(urls: list[str], workers: int) -> list[ShardInfo]:
    if workers <= 1 or len(urls) < 4:
        return [check_shard(url) for url in urls]
    from concurrent.futures import ThreadPoolExecutor

    # Checking a local shard is seeks and small reads, a pipe: shard waits on its command:
    # both release the GIL, so threads suffice.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(check_shard, urls))


def checked_shards(spec: str, index: Path | None, workers: int, label: str) -> ShardSet:
    """Expand, check and count the shards of ``spec`` (collective in a distributed run).

    Args:
        spec: the source string (brace patterns, ``pipe:`` commands).
        index: the shard index file to reuse and update, or None.
        workers: threads per rank that check shards.
        label: the source's name in messages.

    Raises:
        ShardError: a bad pattern, or a shard that is missing, not a tar, truncated or empty.
    """
    group = RankGroup()
    urls = expand_shards(spec)  # the same on every rank; raises the same error on each
    cached = group.run_on_zero(lambda: _read_cache(index))
    todo = [i for i, url in enumerate(urls) if not _unchanged(url, cached.get(url))]
    todo = group.broadcast(todo)  # rank 0's view of what changed
    mine = _check_many([urls[i] for i in todo[group.rank :: group.world]], workers)
    checked: dict[int, ShardInfo] = {}
    for rank, share in enumerate(group.gather(mine)):
        checked.update(zip(todo[rank :: group.world], share, strict=True))
    infos = [checked.get(i) or cached[url] for i, url in enumerate(urls)]
    bad = [info.error for info in infos if info.error]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ShardError(bad[0] + more)
    if todo and index is not None and group.rank == 0:
        _write_cache(index, urls, infos)
    shards = ShardSet(tuple(urls), tuple(info.samples for info in infos))
    log_once_per_process(
        logging.INFO,
        f"{label}: {len(urls):,} shards, {shards.samples:,} audio samples "
        f"({len(urls) - len(todo):,} shards unchanged since the index, {len(todo):,} checked)",
    )
    return shards
