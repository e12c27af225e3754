"""``escx decompress IN.escx... -o OUT --model CKPT``: ``.escx`` bitstreams -> 16-bit wav files."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from escx.commands.common import ArgumentParser, CommandError, add_precision_argument
from escx.commands.compress import (
    check_targets,
    output_folders,
    plan_outputs,
    run_files,
    summary,
)


def escx_files(folder: Path) -> list[Path]:
    """``.escx`` files under ``folder``, recursively, sorted; hidden files and folders skipped.

    Links are followed with each real folder entered once (:func:`escx.files.scan.find_files`).
    """
    from escx.files.scan import find_files

    return find_files(folder, lambda name: Path(name).suffix.lower() == ".escx")


def main(argv: list[str]) -> int:
    if "--stream" in argv:  # raw PCM <-> an escx stream: its own arguments
        from escx.commands.stream import decompress_main

        return decompress_main(argv)
    parser = ArgumentParser(
        prog="escx decompress", description="Decompress .escx bitstreams to 16-bit wav files."
    )
    parser.add_argument("inputs", nargs="+", metavar="IN", help=".escx files or folders")
    parser.add_argument("-o", "--output", required=True, help="output .wav file or folder")
    parser.add_argument(
        "--model", required=True, help="the checkpoint the files were compressed with"
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="read an escx stream from stdin, write raw PCM to stdout as samples become final "
        "(escx decompress --stream --help)",
    )
    add_precision_argument(parser)
    args = parser.parse_args(argv)

    from escx.api import load_codec

    pairs, root = plan_outputs(args.inputs, args.output, escx_files, ".wav", ".escx files")
    check_targets(pairs, root, "escx decompress writes audio", (".wav", ".flac"))
    handle = load_codec(args.model, precision=args.precision)
    for source, _ in pairs:  # verify every file first: a bad one fails before anything is written
        try:
            handle.read(source)
        except (ValueError, OSError) as error:
            raise CommandError(f"{source}: {str(error).strip().splitlines()[0]}") from None

    def work(source: Path, target: Path, bar: tqdm):
        return handle.decompress(source, target)

    with output_folders(root, pairs):
        results = run_files(pairs, work, "decompress")
    seconds = sum(r.seconds for r in results)
    where = pairs[0][1] if root is None else root
    summary(
        f"decompressed {len(results)} file{'s' * (len(results) != 1)}: {seconds:.1f} s of audio "
        f"at {handle.sample_rate} Hz in {where}",
        where if root is None else None,
    )
    return 0
