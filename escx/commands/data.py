"""``escx data shard|index``: write WebDataset shards or a data index of a corpus.

* ``escx data shard SRC -o OUT [--shard-size 1GB]``: tar shards of a folder or manifest
  (:mod:`escx.data.sharder`), written whole or not at all; prints the ``--data.train`` pattern.
* ``escx data index DIR -o FILE.csv``: the data index escx keeps for a training folder
  (:mod:`escx.data.index`), as a manifest to pass as ``--data.train FILE.csv``; an existing
  index of the same folder is updated (only new or changed files are checked).
"""

from __future__ import annotations

import logging
from pathlib import Path

from escx.commands.common import EXIT_SIGTERM, ArgumentParser, CommandError, fail, say
from escx.security.resources import usable_cores


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog="escx data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True, metavar="{shard,index}")
    shard = sub.add_parser("shard", help="write WebDataset tar shards of a folder or manifest")
    shard.add_argument("source", help="a folder of audio (recursive) or a .csv/.jsonl manifest")
    shard.add_argument("-o", "--out", required=True, help="new (or empty) folder for the shards")
    shard.add_argument("--shard-size", default="1GB", help="bytes per shard (default 1GB)")
    shard.add_argument("--prefix", default="shard", help="shard file name prefix")
    shard.add_argument("--seed", type=int, default=53, help="seed of the file order's shuffle")
    shard.add_argument("--no-shuffle", action="store_true", help="keep the sorted file order")
    index = sub.add_parser("index", help="write (or update) the data index of a folder")
    index.add_argument("source", help="a folder of audio (recursive)")
    index.add_argument("-o", "--out", required=True, help="the index file (.csv)")
    for action in (shard, index):
        action.add_argument(
            "--workers", type=int, default=usable_cores(),
            help="processes checking files (default: the usable cores)",
        )  # fmt: skip
        action.prog = f"escx data {action.prog.split()[-1]}"
        action.error = parser.error  # type: ignore[method-assign]  # one line, exit 2
    return parser


def _check_workers(workers: int) -> None:
    from escx.security.resources import MAX_WORKERS_PER_CORE

    if not 1 <= workers <= MAX_WORKERS_PER_CORE * usable_cores():
        raise CommandError(
            f"--workers {workers}: give 1 to {MAX_WORKERS_PER_CORE * usable_cores()} processes"
        )


def _shard(args) -> int:
    from escx.data.sharder import parse_size, write_shards
    from escx.evaluation.staging import staged_report

    shard_bytes = parse_size(args.shard_size)
    source, out = Path(args.source), Path(args.out)
    if not source.exists():
        raise CommandError(f"{source}: no such folder or manifest")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"-o {out}: exists and is not an empty folder; give a new folder")
    if not out.parent.is_dir():
        raise CommandError(f"-o {out}: folder {out.parent} does not exist")
    resolved_out, resolved_src = out.resolve(), source.resolve()
    if resolved_src.is_dir() and resolved_out.is_relative_to(resolved_src):
        raise CommandError(f"-o {out} is inside {source}; write the shards elsewhere")
    with staged_report(out) as staging:
        summary = write_shards(source, staging, shard_bytes, args.prefix,
                               None if args.no_shuffle else args.seed, args.workers)  # fmt: skip
    say(
        f"{summary.samples:,} files in {summary.shards:,} shards ({summary.bytes / 1e9:.2f} GB)"
        + (f", {summary.skipped:,} unusable files skipped" if summary.skipped else "")
    )
    say(f"train on them with: --data.train '{out / summary.pattern}'")
    return 0


def _index(args) -> int:
    from escx.data.index import INDEX_COLUMNS, indexed_folder

    source, out = Path(args.source), Path(args.out)
    if not source.is_dir():
        raise CommandError(f"{source}: no such folder of audio")
    if out.suffix.lower() != ".csv":
        raise CommandError(f"-o {out}: an index is a CSV manifest; name it FILE.csv")
    if out.exists():
        with open(out, encoding="utf-8", errors="replace") as handle:
            header = handle.readline(4096).strip()
        if header != ",".join(INDEX_COLUMNS):
            raise CommandError(f"-o {out}: exists and is not an escx data index; give a new file")
    if not out.parent.is_dir():
        raise CommandError(f"-o {out}: folder {out.parent} does not exist")
    table = indexed_folder(source, out, 16000, args.workers, str(source), "check the folder")
    hours = float(table.frames.sum()) / 16000 / 3600
    say(f"{len(table):,} usable files ({hours:,.1f} h) indexed in {out}")
    say(f"train on them with: --data.train {out}")
    return 0


def main(argv: list[str]) -> int:
    from escx.evaluation.staging import Terminated, sigterm_raises

    args = _parser().parse_args(argv)
    _check_workers(args.workers)
    logging.basicConfig(level=logging.INFO, format="escx data: %(message)s")
    try:
        with sigterm_raises():
            return _shard(args) if args.action == "shard" else _index(args)
    except Terminated:
        fail("stopped by SIGTERM; nothing was written")
        return EXIT_SIGTERM
    except KeyboardInterrupt:
        fail("interrupted; nothing was written")
        return 130
