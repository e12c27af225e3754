"""``escx compress IN... -o OUT --model CKPT [--kbps K]``: audio files -> ``.escx`` bitstreams.

Also holds the input/output planning shared with ``escx decompress``: one input file writes to
``OUT`` itself (or into ``OUT`` when it is an existing folder); several inputs or a folder write
into folder ``OUT``, mirroring the folders' relative layout.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from escx.commands.common import ArgumentParser, CommandError, add_precision_argument, say

Finder = Callable[[Path], list[Path]]


def plan_outputs(
    inputs: Sequence[str | Path], output: str | Path, find: Finder, suffix: str, kind: str
) -> tuple[list[tuple[Path, Path]], Path | None]:
    """Pair every input file with its output path.

    Args:
        inputs: files and folders given on the command line.
        output: ``-o`` value.
        find: lists the files to process under a folder, recursively.
        suffix: extension of the outputs (``.escx`` or ``.wav``).
        kind: what ``find`` looks for, for messages ("audio files").

    Returns:
        ``(pairs, root)``: ``(input, output)`` pairs in order, and the output folder to create
        (None when the one output is a file).

    Raises:
        CommandError: missing input, empty folder, an output file given for several inputs, or
            two inputs that would write the same output.
    """
    as_folder = str(output).endswith(("/", os.sep))  # "out/" means a folder even if missing
    output = Path(output)
    groups: list[tuple[Path, list[Path]]] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise CommandError(f"input not found: {item}")
        files = find(item) if item.is_dir() else [item]
        if not files:
            raise CommandError(f"no {kind} under {item}")
        groups.append((item, files))
    if len(groups) == 1 and not groups[0][0].is_dir() and not as_folder:
        source = groups[0][0]
        target = output / source.with_suffix(suffix).name if output.is_dir() else output
        return [(source, target)], None
    if output.exists() and not output.is_dir():
        raise CommandError(f"-o {output} must be a folder for several inputs or a folder input")
    pairs = []
    for item, files in groups:
        for file in files:
            if item.is_dir():
                rel = file.relative_to(item)
                rel = rel if len(groups) == 1 else Path(item.resolve().name) / rel
            else:
                rel = Path(file.name)
            pairs.append((file, output / rel.with_suffix(suffix)))
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if target in seen:
            raise CommandError(
                f"{seen[target]} and {source} would both be written to {target}; rename one"
            )
        seen[target] = source
    return pairs, output


def check_targets(
    pairs: list[tuple[Path, Path]], root: Path | None, writes: str, allowed: tuple[str, ...]
) -> None:
    """Refuse, before any work, outputs that are misnamed, are an input, or cannot be written.

    Every target is checked, in a folder too: an existing ``OUT/a.escx`` may be a link to the
    input ``a.wav``, a directory, or a dangling link.

    Args:
        pairs: ``(input, output)`` pairs from :func:`plan_outputs`.
        root: the output folder (None for one output file, whose folder must exist now).
        writes: what the command writes, for messages.
        allowed: the extensions an output file may have.
    """
    from escx.files.targets import (
        check_not_input,
        check_output_path,
        check_output_suffix,
        output_target,
    )

    if root is not None and os.path.lexists(root) and not root.exists():
        output_target(root)  # a link to nothing or a loop: says so in one line
    for source, target in pairs:
        check_output_suffix(target, writes, allowed)
        check_not_input(source, target)
        if root is None:
            check_output_path(target)


@contextmanager
def output_folders(root: Path | None, pairs: list[tuple[Path, Path]]) -> Iterator[None]:
    """Create the folders under ``root`` that the outputs need; on failure remove those of them
    that are still empty. ``root`` None (one output file): nothing is created."""
    created: list[Path] = []
    if root is not None:
        if not root.parent.is_dir():
            raise CommandError(f"cannot create output folder {root}: {root.parent} does not exist")
        for folder in sorted({target.parent for _, target in pairs}):
            missing = [f for f in (folder, *folder.parents) if not f.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            created += reversed(missing)
    try:
        yield
    except BaseException:
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:  # not empty: holds files written before the error
                pass
        raise


def summary(text: str, output: Path | None) -> None:
    """Report a command's result: on stdout, or on stderr when the output is stdout itself
    (``-o /dev/stdout | player``), where the line would be mixed into the data."""
    from escx.files.targets import is_stdout

    if output is not None and is_stdout(output):
        sys.stderr.write(text + "\n")
    else:
        say(text)


def report(message: str, bar: tqdm | None = None) -> None:
    """One line on stderr that does not break the progress bar."""
    if bar is not None and not bar.disable:
        bar.write(message, file=sys.stderr)
    else:
        sys.stderr.write(message + "\n")


def run_files(
    pairs: list[tuple[Path, Path]], work: Callable[[Path, Path, tqdm], Any], verb: str
) -> list[Any]:
    """Run ``work(source, target)`` over pairs with a progress bar; errors name the file."""
    results = []
    with tqdm(pairs, disable=len(pairs) < 2, file=sys.stderr, unit="file", desc=verb) as bar:
        for source, target in bar:
            try:
                results.append(work(source, target, bar))
            except (ValueError, OSError) as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                if str(source) not in first:
                    first = f"{source}: {first}"
                done = f" ({len(results)} of {len(pairs)} files were written)" if results else ""
                raise CommandError(first + done) from None
    return results


def audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder``, recursively."""
    from escx.audio import find_audio_files

    return find_audio_files(folder)


def main(argv: list[str]) -> int:
    if "--stream" in argv:  # raw PCM <-> an escx stream: its own arguments
        from escx.commands.stream import compress_main

        return compress_main(argv)
    parser = ArgumentParser(
        prog="escx compress", description="Compress audio files to .escx bitstreams."
    )
    parser.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders")
    parser.add_argument("-o", "--output", required=True, help="output file or folder")
    parser.add_argument("--model", required=True, help="codec checkpoint (escx fit / convert)")
    parser.add_argument("--kbps", type=float, default=None, help="bitrate (default: highest)")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="read raw PCM from stdin, write an escx stream to stdout as frames become final "
        "(escx compress --stream --help)",
    )
    add_precision_argument(parser)
    args = parser.parse_args(argv)

    from escx.api import load_codec
    from escx.audio import audio_info

    pairs, root = plan_outputs(args.inputs, args.output, audio_files, ".escx", "audio files")
    check_targets(pairs, root, "escx compress writes .escx bitstreams", (".escx",))
    handle = load_codec(args.model, precision=args.precision)
    streams = handle.streams(args.kbps)
    for source, _ in pairs:  # header checks first: a bad file fails before anything is written
        audio_info(source, handle.sample_rate)

    def work(source: Path, target: Path, bar: tqdm):
        result = handle.compress(source, target, n_streams=streams)
        if result.notice:
            report(f"escx: notice: {result.notice}", bar)
        return result

    with output_folders(root, pairs):
        results = run_files(pairs, work, "compress")
    seconds = sum(r.seconds for r in results)
    size = sum(r.num_bytes for r in results)
    where = pairs[0][1] if root is None else root
    summary(
        f"compressed {len(results)} file{'s' * (len(results) != 1)}: {seconds:.1f} s of audio "
        f"-> {size:,} bytes ({size * 8 / max(seconds, 1e-9) / 1000:.2f} kbps, nominal "
        f"{handle.kbps(streams):g}) in {where}",
        where if root is None else None,
    )
    return 0
