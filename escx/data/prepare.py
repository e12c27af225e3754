"""Prepare ``data/train`` and ``data/val`` for the default config (``make data``).

Three ways, in order of preference::

    python -m escx.data.prepare --source DIR      # any local folder of wav/flac/ogg/mp3
    python -m escx.data.prepare --hf [NAME]       # a Hugging Face dataset (default: LibriSpeech)
    python -m escx.data.prepare                   # a SYNTHETIC speech-like corpus (offline)

``--hf`` falls back to the synthetic corpus when the hub cannot be reached (or ``HF_HUB_OFFLINE``
is set), unless ``--no-fallback``. Output is 16 kHz mono 16-bit FLAC. Everything is written into a
temporary folder beside the output and renamed into place at the end, so an interrupted run leaves
no half-written data folder. Existing data is kept unless ``--force``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from escx.audio import AudioError, find_audio_files
from escx.data.convert import ConvertReport, convert_files, convert_rows, plan_split
from escx.data.hf import HFSourceError, open_hf_dataset
from escx.data.synthetic import MARKER, generate_corpus

log = logging.getLogger("escx.data.prepare")

DEFAULT_HF = "openslr/librispeech_asr"


class PrepareError(RuntimeError):
    """A failure while preparing (bad source, unreachable data); reported in one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage block or traceback
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m escx.data.prepare",
        description="Prepare data/train and data/val (16 kHz mono FLAC) for escx.",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--source", type=Path, metavar="DIR", help="convert a local audio folder")
    src.add_argument(
        "--hf",
        nargs="?",
        const=DEFAULT_HF,
        metavar="NAME",
        help=f"download a Hugging Face dataset (hub id or local path; default {DEFAULT_HF})",
    )
    src.add_argument("--synthetic", action="store_true", help="generate the synthetic corpus")
    p.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data)")
    p.add_argument("--force", action="store_true", help="replace existing data/train and data/val")
    p.add_argument("--seed", type=int, default=53, help="seed of the split and synthetic audio")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of files for val")
    p.add_argument("--max-files", type=int, help="cap on training files (--hf default 2000)")
    p.add_argument("--max-val-files", type=int, help="cap on val files (--hf default 200)")
    p.add_argument("--hf-config", help="dataset config (LibriSpeech default: clean)")
    p.add_argument("--hf-split", help="training split (LibriSpeech default: train.100)")
    p.add_argument(
        "--hf-val-split",
        help="val split (LibriSpeech default: validation); '' takes val from the training rows",
    )
    p.add_argument("--hf-audio-column", default="audio", help="audio column (default: audio)")
    p.add_argument("--no-fallback", action="store_true", help="fail instead of going synthetic")
    p.add_argument("--synthetic-files", type=int, default=240, help="synthetic training files")
    p.add_argument("--synthetic-seconds", type=float, default=4.0, help="synthetic file length")
    return p


def hub_reachable(timeout: float = 3.0) -> bool:
    """False at once under ``HF_HUB_OFFLINE``, else whether the hub's port answers in time."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _report(split: str, report: ConvertReport) -> None:
    if report.failures:
        log.warning(
            "%s: skipped %d of %d files (unreadable or empty): first: %s",
            split,
            len(report.failures),
            report.written + len(report.failures),
            report.failures[0],
        )
    if not report.written:
        raise PrepareError(f"no usable audio for {split}: 0 files could be read")
    notes = [f"{report.resampled} resampled"] if report.resampled else []
    notes += [f"{report.downmixed} down-mixed to mono"] if report.downmixed else []
    log.info("%s: %d files%s", split, report.written, f" ({', '.join(notes)})" if notes else "")


def _from_folder(args: argparse.Namespace, stage: Path) -> str:
    try:
        plan = plan_split(args.source, args.val_fraction, args.seed)
    except AudioError as err:
        raise PrepareError(str(err)) from None
    log.info(
        "splitting %s %s: %d train, %d val", args.source, plan.how, len(plan.train), len(plan.val)
    )
    for split, files, cap in (
        ("train", plan.train, args.max_files),
        ("val", plan.val, args.max_val_files),
    ):
        _report(split, convert_files(files[:cap], stage / split))
    return f"local folder {args.source} ({plan.how})"


def _from_hf(args: argparse.Namespace, stage: Path) -> str:
    # LibriSpeech's config and split names are defaults only for LibriSpeech itself.
    librispeech = args.hf == DEFAULT_HF
    config = args.hf_config or ("clean" if librispeech else None)
    split = args.hf_split or ("train.100" if librispeech else None)
    val_split = args.hf_val_split
    if val_split is None and librispeech:
        val_split = "validation"
    single = (Path(args.hf).expanduser() / "state.json").is_file()  # a Dataset without splits

    def rows(name: str | None, role: str):
        return open_hf_dataset(
            args.hf,
            name,
            role=role,
            config=config,
            audio_column=args.hf_audio_column,
            streaming=True,
        )

    n_train, n_val = args.max_files or 2000, args.max_val_files or 200
    try:
        train = rows(split, "train")
        val = None
        if val_split != "" and not single:
            try:
                val = rows(val_split, "val").take(n_val)
            except HFSourceError:
                if val_split is not None:
                    raise
        if val is None:  # no separate val split: its first rows are val, the rest train
            val, train = train.take(n_val), train.skip(n_val)
        train = train.take(n_train)
    except HFSourceError as err:
        raise PrepareError(str(err)) from None
    label = f"hf:{args.hf}"
    _report("train", convert_rows(train, args.hf_audio_column, stage / "train", label))
    _report("val", convert_rows(val, args.hf_audio_column, stage / "val", label))
    details = ", ".join(f"{k} {v}" for k, v in (("config", config), ("split", split)) if v)
    return f"Hugging Face dataset {args.hf}" + (f" ({details})" if details else "")


def _synthetic(args: argparse.Namespace, stage: Path, why: str) -> str:
    banner = "=" * 78
    log.warning(
        "%s\nSYNTHETIC DATA: %s.\n%s/train and %s/val will hold synthetic speech-like audio, NOT "
        "real speech: fine for smoke tests, useless for real models.\nFor real data: "
        "`python -m escx.data.prepare --source DIR --force` or `--hf --force`.\n%s",
        banner,
        why,
        args.out,
        args.out,
        banner,
    )
    n = max(1, args.synthetic_files)
    seconds = args.synthetic_seconds
    generate_corpus(stage / "train", n, seconds, args.seed, n_speakers=max(1, n // 8))
    n_val = max(1, round(n * args.val_fraction))
    generate_corpus(stage / "val", n_val, seconds, args.seed, max(1, n_val // 3), first_speaker=900)
    return "SYNTHETIC corpus (escx.data.synthetic)"


def _install(stage: Path, out: Path) -> None:
    """Move staged train/ and val/ into ``out``, old ones aside into the stage (then deleted)."""
    for split in ("train", "val"):
        dest = out / split
        if dest.exists() or dest.is_symlink():
            os.replace(dest, stage / f"old-{split}")
        os.replace(stage / split, dest)


def prepare(args: argparse.Namespace) -> int:
    """Run a parsed command line; returns the exit status."""
    out: Path = args.out
    existing = find_audio_files(out / "train") if (out / "train").is_dir() else []
    if existing and not args.force:
        kind = " SYNTHETIC" if (out / "train" / MARKER).exists() else ""
        log.info(
            "%s/train already has %d%s audio files: nothing to do (pass --force to replace them)",
            out,
            len(existing),
            kind,
        )
        return 0
    for split in ("train", "val"):
        folder = out / split
        if not args.force and folder.is_dir() and any(folder.iterdir()):
            raise PrepareError(f"{folder} exists and is not empty; pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out))
    try:
        remote = args.hf is not None and not Path(args.hf).expanduser().exists()
        if args.source is not None:
            origin = _from_folder(args, stage)
        elif remote and not hub_reachable():
            if args.no_fallback:
                raise PrepareError("the Hugging Face hub is unreachable (or HF_HUB_OFFLINE is set)")
            origin = _synthetic(args, stage, f"the Hugging Face hub is unreachable for {args.hf}")
        elif args.hf is not None:
            origin = _from_hf(args, stage)
        else:
            origin = _synthetic(args, stage, "no --source DIR or --hf NAME was given")
        for split in ("train", "val"):
            (stage / split / "SOURCE.txt").write_text(
                f"prepared by escx.data.prepare from {origin}\n"
            )
        _install(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    log.info("data ready: %s/train and %s/val from %s", out, out, origin)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns 0 on success, 1 on failure, 2 on bad arguments."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.source is not None and not args.source.is_dir():
        parser.error(f"--source {args.source}: not a folder")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    for name in ("max_files", "max_val_files", "synthetic_files"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.synthetic_seconds <= 0:
        parser.error(f"--synthetic-seconds must be positive, got {args.synthetic_seconds}")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return prepare(args)
    except (PrepareError, AudioError, OSError) as err:
        log.error("%s", str(err).splitlines()[0] if str(err) else type(err).__name__)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; nothing was changed")
        return 130


if __name__ == "__main__":
    sys.exit(main())
