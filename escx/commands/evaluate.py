"""``escx eval [--model CKPT] [--baseline opus|codec2 ...] --data DIR [-o OUTDIR] [--streams 1-6]
[--max-files N] [--listen N]``.

Prints a per-bitrate table (PESQ-wb, STOI, ESTOI, SI-SDR, mel distance, with the ``eval`` extra
DNSMOS, ViSQOL and speaker similarity, bitrate utilisation, measured kbps, encode/decode
real-time factor, clips scored and dropped per metric) for the trained codec and the classical
codecs asked for; with ``-o`` also writes results.csv, results.json, results.md, plots and
report.html (a page with players for the first ``--listen`` clips, opening from disk) into
OUTDIR. The report folder appears whole or not at all: it is built beside OUTDIR and swapped in
at the end; a failure, Ctrl-C or SIGTERM leaves OUTDIR as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from escx.commands.common import (
    EXIT_SIGTERM,
    ArgumentParser,
    CommandError,
    add_model_metrics_argument,
    add_precision_argument,
    fail,
    say,
)


def _parser() -> ArgumentParser:
    from escx.baselines import BASELINES

    parser = ArgumentParser(prog="escx eval", description="Evaluate a codec at each bitrate.")
    parser.add_argument("--model", default=None, help="codec checkpoint (escx fit / convert)")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME",
        help=f"also evaluate a classical codec ({', '.join(BASELINES)}: Opus at 6, 9, 12 kbps, "
        "Codec2 at 3.2, 1.2 kbps); repeat for several",
    )
    parser.add_argument("--data", required=True, help="folder of audio files (or one file)")
    parser.add_argument("--streams", default=None, help="stream counts, e.g. 1-6 or 1,3,6")
    parser.add_argument("-o", "--output", default=None, help="folder for the report files")
    parser.add_argument("--max-files", type=int, default=None, help="use the first N files")
    parser.add_argument("--no-stoi", action="store_true", help="skip STOI and ESTOI (faster)")
    add_model_metrics_argument(parser)
    parser.add_argument(
        "--listen",
        type=int,
        default=4,
        help="clips with players in report.html (default 4; metrics use every clip)",
    )
    add_precision_argument(parser)
    return parser


def main(argv: list[str]) -> int:
    from escx.evaluation.staging import Terminated, sigterm_raises

    try:
        with sigterm_raises():
            return _run(_parser().parse_args(argv))
    except Terminated:
        fail("stopped by SIGTERM; no report was written (an earlier one is unchanged)")
        return EXIT_SIGTERM


def _run(args: Any) -> int:
    if args.max_files is not None and args.max_files < 1:
        raise CommandError(f"--max-files must be >= 1, got {args.max_files}")
    if args.listen < 0:
        raise CommandError(f"--listen must be >= 0, got {args.listen}")
    if args.model is None and not args.baseline:
        raise CommandError("nothing to evaluate: give --model CKPT, --baseline NAME, or both")
    if args.model is None and args.streams is not None:
        raise CommandError("--streams selects a trained codec's bitrates; give --model CKPT")

    from escx.baselines import load_baseline
    from escx.evaluation.target import check_report_target

    # Unknown names and missing libraries are one line, before anything heavy loads.
    baselines = [load_baseline(name) for name in dict.fromkeys(args.baseline)]
    output = Path(args.output) if args.output else None
    if output is not None:
        check_report_target(output, args.data)

    from escx.audio import find_audio_files

    files = find_audio_files(args.data)
    if not files:
        raise CommandError(f"no audio files under {args.data}")
    files = files[: args.max_files]
    handle = streams = None
    if args.model is not None:
        from escx.api import load_codec
        from escx.evaluation import parse_streams

        handle = load_codec(args.model, precision=args.precision)
        streams = parse_streams(args.streams, handle.codec.max_streams)
    if output is None:
        _evaluate(args, files, handle, streams, baselines, None)
        return 0

    from escx.evaluation.staging import staged_report

    staging: Path | None = None
    try:
        with staged_report(output) as folder:
            staging = folder
            paths = _evaluate(args, files, handle, streams, baselines, folder)
    except (OSError, ValueError) as error:
        # The staging folder is gone; name what the user asked for, not the hidden folder.
        reason = _one_line(error)
        if staging is not None:
            reason = reason.replace(str(staging), str(output))
        raise CommandError(f"{reason} (no report written; {output} is as it was)") from None
    say(f"wrote {', '.join(p.name for p in paths.values())} to {output}")
    say(f"listening report: {output / paths['html'].name}")
    return 0


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, OSError) and error.strerror and error.filename:
        text = f"{error.filename}: {error.strerror}"
    return text.splitlines()[0] if text else type(error).__name__


def _evaluate(
    args: Any,
    files: list[Path],
    handle: Any,
    streams: list[int] | None,
    baselines: list[Any],
    folder: Path | None,
) -> dict[str, Path]:
    """Evaluate, print the table and (with ``folder``) write the report there."""
    from escx.evaluation import evaluate_codec, markdown_table, write_report
    from escx.evaluation.classical import describe_baselines, evaluate_baselines
    from escx.evaluation.core import describe
    from escx.evaluation.listening import Listening

    rate = handle.sample_rate if handle is not None else 16000
    listening = Listening(folder, rate, args.listen) if folder is not None else None
    options = {"with_stoi": not args.no_stoi, "with_models": not args.no_model_metrics}
    rows: list[dict[str, Any]] = []
    captions = []
    if handle is not None:
        name = Path(args.model).stem
        listen = listening.bitrates(handle.kbps, grid=name) if listening is not None else None
        rows += evaluate_codec(
            handle, files, streams, progress=True, listen=listen, name=name, **options
        )
        captions.append(describe(handle, args.data, rows))
    if baselines:
        listen = None
        if listening is not None:
            listen = listening.labelled("classical codecs", sample_rate=16000)
        found = evaluate_baselines(baselines, files, progress=True, listen=listen, **options)
        rows += found
        if handle is None:
            seconds = found[0]["seconds"]
            captions.append(f"On {args.data}: {len(files)} files, {seconds:.1f} s.")
        captions.append(describe_baselines(baselines, found))
    caption = " ".join(captions)
    say(markdown_table(rows, caption), end="")
    if folder is None:
        return {}
    names = [Path(args.model).name] if handle is not None else []
    names += [b.name for b in baselines]
    title = f"{', '.join(names)} on {Path(args.data).name or args.data}"
    return write_report(rows, folder, title, caption, listening=listening)
