"""``escx eval --model CKPT --data DIR [--streams 1-6] [-o OUTDIR] [--max-files N] [--listen N]``.

Prints a per-bitrate table (PESQ-wb, STOI, SI-SDR, mel distance, with the ``eval`` extra DNSMOS,
ViSQOL and speaker similarity, bitrate utilisation, measured kbps, encode/decode real-time
factor); with ``-o`` also writes results.csv, results.json, results.md, plots and report.html (a
page with players for the first ``--listen`` clips, opening from disk) into OUTDIR.
"""

from __future__ import annotations

from pathlib import Path

from escx.commands.common import (
    ArgumentParser,
    CommandError,
    add_model_metrics_argument,
    add_precision_argument,
    say,
)


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="escx eval", description="Evaluate a codec at each bitrate.")
    parser.add_argument("--model", required=True, help="codec checkpoint (escx fit / convert)")
    parser.add_argument("--data", required=True, help="folder of audio files (or one file)")
    parser.add_argument("--streams", default=None, help="stream counts, e.g. 1-6 or 1,3,6")
    parser.add_argument("-o", "--output", default=None, help="folder for the report files")
    parser.add_argument("--max-files", type=int, default=None, help="use the first N files")
    parser.add_argument("--no-stoi", action="store_true", help="skip STOI (faster)")
    add_model_metrics_argument(parser)
    parser.add_argument(
        "--listen",
        type=int,
        default=4,
        help="clips with players in report.html (default 4; metrics use every clip)",
    )
    add_precision_argument(parser)
    args = parser.parse_args(argv)
    if args.max_files is not None and args.max_files < 1:
        raise CommandError(f"--max-files must be >= 1, got {args.max_files}")
    if args.listen < 0:
        raise CommandError(f"--listen must be >= 0, got {args.listen}")
    output = Path(args.output) if args.output else None
    if output is not None and not output.parent.is_dir():
        problem = "is not a directory" if output.parent.exists() else "does not exist"
        raise CommandError(f"cannot create {output}: {output.parent} {problem}")
    if output is not None and output.exists() and not output.is_dir():
        raise CommandError(f"-o {output} is a file; give a folder for the report")

    from escx.api import load_codec
    from escx.audio import find_audio_files
    from escx.evaluation import evaluate_codec, markdown_table, parse_streams, write_report
    from escx.evaluation.core import describe
    from escx.evaluation.listening import Listening

    files = find_audio_files(args.data)
    if not files:
        raise CommandError(f"no audio files under {args.data}")
    files = files[: args.max_files]
    handle = load_codec(args.model, precision=args.precision)
    streams = parse_streams(args.streams, handle.codec.max_streams)
    listening = None
    if output is not None:
        output.mkdir(exist_ok=True)
        listening = Listening(output, handle.sample_rate, args.listen)
    rows = evaluate_codec(
        handle,
        files,
        streams,
        progress=True,
        with_stoi=not args.no_stoi,
        with_models=not args.no_model_metrics,
        listen=listening.bitrates(handle.kbps) if listening is not None else None,
    )
    caption = describe(handle, args.data, rows)
    say(markdown_table(rows, caption), end="")
    if output is not None:
        title = f"{Path(args.model).name} on {Path(args.data).name or args.data}"
        paths = write_report(rows, output, title, caption, listening=listening)
        say(f"wrote {', '.join(p.name for p in paths.values())} to {output}")
        say(f"listening report: {paths['html']}")
    return 0
