"""``make demo``: prepare data, train a small ESC on CPU, evaluate, compress, and say how it went.

Steps, each printed as it happens:

1. data: ``DATA=DIR`` (a folder with train/ and val/, or any audio folder, which is split),
   else ``data/`` from ``make data`` (Hugging Face when online, synthetic speech-like audio when
   not, which the demo then warns about loudly);
2. the untrained model is evaluated on a few validation files (the "before" numbers), with
   progress on stderr;
3. ``escx fit`` trains ``experiments/esc.yaml`` + ``experiments/tiny.yaml`` + the recipe's
   overlay (``--recipe``, default quick: ``experiments/recipes/quick.yaml``) through pre-training
   (the first :data:`PRETRAIN_SHARE` of the steps) into quantized training, on
   :data:`PROCESSES` data-parallel CPU processes (``--processes``; W&B offline, run
   folder ``runs/demo``; run again, the demo resumes that run where it stopped, or reuses it when
   it finished);
4. the trained model is evaluated at every bitrate (the same code as ``escx eval``) and the
   listening report (``report/report.html`` in the run folder: players, spectrograms, table,
   plots) is written;
5. one validation file is compressed at 3 and 9 kbps and decompressed, with file sizes and
   metrics printed;
6. one summary line: steps, recipe, data, and the quality at 9 and 1.5 kbps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from escx.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_SIGINT,
    CommandError,
    add_model_metrics_argument,
    say,
)
from escx.experiments.fit_check import check_fit_commands
from escx.experiments.options import DriverParser, at_least, check_devices
from escx.experiments.recipes import (
    RECIPES,
    config_path,
    describe_recipe,
    recipe_configs,
    repo_relative,
)
from escx.experiments.runs import RunStopped, check_run_folder, fit_command, run_fit
from escx.experiments.studies import pretrain_steps
from escx.security.resources import usable_cores

ROOT = Path("runs/demo")
MODEL = ["experiments/esc.yaml", "experiments/tiny.yaml"]
RECIPE = "quick"  # at this size and budget, ESC's own recipe still decodes noise
# Steps when --steps is not given, inside the demo's 45-minute budget on an idle 2-core machine
# with PROCESSES training processes: the whole demo at 7,000 steps took 43 min there (about
# 0.355 s a step, evaluations about 2 minutes) and ended at 9 kbps PESQ 1.61 (6,000 steps: 37 min,
# PESQ 1.55). docs/recipes.md has the runs, their curves and the alternatives measured.
DEFAULT_STEPS = 7000
# Share of the steps trained with the quantizer bypassed before the codebooks switch on.
PRETRAIN_SHARE = Fraction(1, 4)
SUMMARY_KBPS = (9.0, 1.5)  # the bitrates of the summary line, highest first
# Data-parallel training processes (DDP over CPU cores, Lightning's gloo backend), each with the
# recipe's batch. The recipe's step is too small for one process to keep two cores busy (0.28 s
# with one thread, 0.24 s with two); two processes of one thread each take about 0.355 s a step
# but train on twice the audio, and that pays: at 5,000 steps two processes scored 9 kbps PESQ
# 1.56 on 16 files, what one process reached only at 8,000.
PROCESSES = 2


def fit_device_options(processes: int) -> list[str]:
    """``escx fit`` options that train on ``processes`` CPU processes (one: Lightning's default)."""
    if processes == 1:
        return []
    return [
        "--trainer.accelerator=cpu",
        f"--trainer.devices={processes}",
        "--trainer.strategy=ddp",
    ]


def data_folder(data: str | None) -> Path:
    """The folder with train/ and val/ the demo trains on: ``data`` when it is split already,
    else ``data/`` (which :func:`prepare_data` writes from ``data`` or the hub)."""
    if data is not None and (Path(data) / "train").is_dir() and (Path(data) / "val").is_dir():
        return Path(data)
    return Path("data")


def prepare_data(data: str | None) -> Path:
    if data is not None:
        folder = Path(data)
        if data_folder(data) == folder:
            return folder
        cmd = ["--source", str(folder), "--out", "data"]
    elif (Path("data") / "train").is_dir():
        return Path("data")
    else:
        cmd = ["--hf", "--out", "data"]
    say(f"== preparing data: python -m escx.data.prepare {' '.join(cmd)}")
    from escx.data.prepare import main as prepare

    code = prepare(cmd)
    if code:
        raise CommandError(f"preparing data/ failed (exit {code}, see above)", code=code)
    return Path("data")


def demo_configs(recipe: str = RECIPE, extra: Sequence[str] = ()) -> list[str]:
    """The configs the demo stacks: the tiny model, the recipe's overlay, then ``extra``."""
    return [config_path(c) for c in [*MODEL, *recipe_configs(recipe), *extra]]


def is_synthetic(data: Path) -> bool:
    """Whether ``data`` holds the synthetic corpus ``make data`` writes when offline."""
    from escx.data.synthetic import MARKER

    return (data / "train" / MARKER).exists()


def synthetic_warning(data: Path, root: Path) -> str:
    """The loud line printed when the demo trains on synthetic audio (``root``: the run folder)."""
    return (
        f"!!! WARNING: {data} holds SYNTHETIC speech-like audio (`make data` writes it when "
        "offline), NOT speech: these numbers mean nothing for speech. For real speech: `python "
        f"-m escx.data.prepare --force --out {data} --source DIR` with a folder of speech (or "
        f"`--hf` for LibriSpeech, online), then delete {root} and run `make demo` again. !!!"
    )


def evaluate(
    codec_or_ckpt,
    files: list[Path],
    title: str,
    streams=None,
    report: Path | None = None,
    caption: str = "",
    extra: dict[str, Any] | None = None,
    with_models: bool = True,
) -> list[dict]:
    """Evaluate and print the table; with ``report``, also write the listening report there.

    ``caption`` is added to the report's caption; ``extra`` columns are added to every row.
    """
    from escx.api import CodecHandle, load_codec
    from escx.evaluation.core import describe, evaluate_codec
    from escx.evaluation.listening import Listening
    from escx.evaluation.report import markdown_table, write_report

    handle = (
        load_codec(codec_or_ckpt)
        if isinstance(codec_or_ckpt, (str, Path))
        else CodecHandle(codec_or_ckpt)
    )
    listening = None
    if report is not None:
        report.mkdir(parents=True, exist_ok=True)
        listening = Listening(report, handle.sample_rate, clips=4)
    listen = listening.bitrates(handle.kbps) if listening is not None else None
    say(f"\n== evaluating {title} on {len(files)} files (progress on stderr)")
    rows = evaluate_codec(
        handle, files, streams=streams, progress=True, with_stoi=True, with_models=with_models,
        listen=listen, progress_label=f"eval {title}", name="escx",
    )  # fmt: skip
    rows = [{**(extra or {}), **row} for row in rows]
    if report is not None:  # the trained codec's report: Opus on the same clips beside it
        rows += _opus_rows(files, with_models, listening)
    say(f"\n== {title}\n")
    say(markdown_table(rows))
    if report is not None:
        text = describe(handle, files[0].parent, rows) + (f" {caption}" if caption else "")
        write_report(rows, report, f"escx demo: {title}", text, listening=listening)
    return rows


def _opus_rows(files: list[Path], with_models: bool, listening: Any) -> list[dict[str, Any]]:
    """libopus at 6, 9 and 12 kbps on ``files`` with players, or none (one warning line) when
    libopus is not installed: the demo never fails for want of its reference line."""
    from escx.baselines import BaselineUnavailable
    from escx.evaluation.classical import evaluate_baselines

    listen = listening.labelled("classical codecs") if listening is not None else None
    try:
        return evaluate_baselines(
            ["opus"], files, progress=True, with_models=with_models, listen=listen
        )
    except BaselineUnavailable as error:
        sys.stderr.write(f"escx demo: warning: no Opus beside the codec: {error}\n")
        return []


def summary_line(
    steps: int,
    recipe: str,
    data: Path,
    train_files: int,
    synthetic: bool,
    rows: Sequence[dict[str, Any]],
    report: Path,
    processes: int = 1,
) -> str:
    """The demo's last line: what was trained on what, and the quality at :data:`SUMMARY_KBPS`."""

    def score(row: dict[str, Any], key: str, fmt: str) -> str:
        return "n/a" if row.get(key) is None else format(row[key], fmt)

    parts = []
    for kbps in SUMMARY_KBPS:
        row = next((r for r in rows if r["kbps"] == kbps and r.get("codec") != "opus"), None)
        if row is not None:
            parts.append(
                f"{kbps:g} kbps PESQ {score(row, 'pesq', '.2f')} STOI {score(row, 'stoi', '.2f')}"
                f" SI-SDR {score(row, 'sisdr', '.1f')} dB"
            )
    opus = next((r for r in rows if r.get("codec") == "opus" and r["kbps"] == 9.0), None)
    if opus is not None:  # what a classical codec does with the same bits, for scale
        parts.append(f"Opus at 9 kbps: PESQ {score(opus, 'pesq', '.2f')}")
    kind = "SYNTHETIC audio, not speech" if synthetic else "real speech"
    how = f", {processes} processes" if processes > 1 else ""
    return (
        f"escx demo: trained {steps} steps ({recipe} recipe{how}) on {data}/ ({train_files} train "
        f"files, {kind}): {'; '.join(parts)}; report {report}"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m escx.demo``: returns the exit code; errors are one line on stderr."""
    try:
        return _run(argv)
    except KeyboardInterrupt:  # outside training (which saves and reports its own stop)
        sys.stderr.write("escx demo: interrupted\n")
        return EXIT_SIGINT
    except (CommandError, ValueError, OSError) as error:
        code = error.code if isinstance(error, CommandError) else EXIT_BAD_INPUT
        if isinstance(error, RunStopped):  # Ctrl-C or SIGTERM: how to go on, not an error
            sys.stderr.write(f"escx demo: {error}\n")
        else:
            sys.stderr.write(f"escx demo: error: {_one_line(error)}\n")
        return code


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = DriverParser(prog="escx demo", usage="python -m escx.demo [options]")
    parser.add_argument("--data", default=None, help="audio folder (default: data/)")
    parser.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})"
    )
    parser.add_argument(
        "--processes",
        default=None,
        help=f"data-parallel CPU training processes, each with its own batch (default "
        f"{PROCESSES}, or one per core on a machine with fewer)",
    )
    parser.add_argument("--eval-files", type=int, default=8, help="validation files evaluated")
    parser.add_argument("--out", type=Path, default=ROOT, help=f"run folder (default: {ROOT})")
    parser.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=RECIPE,
        help=f"training recipe stacked after the tiny model (default {RECIPE})",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        help="extra config stacked after the recipe (repeatable)",
    )
    add_model_metrics_argument(parser)
    args = parser.parse_args(argv)
    try:
        at_least(args.steps, 1, "--steps")
        at_least(args.eval_files, 1, "--eval-files")
        args.processes = (
            min(PROCESSES, usable_cores())
            if args.processes is None
            else check_devices(args.processes, "--processes", accelerator="cpu")
        )
        if args.data is not None and not Path(args.data).is_dir():
            raise CommandError(f"--data {args.data} is not a folder")
    except CommandError as error:
        parser.error(str(error))
    return args


def _run(argv: list[str] | None) -> int:
    args = _parse(argv)
    root = args.out
    os.environ.setdefault("WANDB_MODE", "offline")
    configs = demo_configs(args.recipe, args.config)
    pretrain = pretrain_steps(args.steps, PRETRAIN_SHARE)
    data_dir = data_folder(args.data)
    cmd = fit_command(
        configs,
        f"--data.train={data_dir / 'train'}",
        f"--data.val={data_dir / 'val'}",
        f"--trainer.max_steps={args.steps}",
        f"--trainer.val_check_interval={args.steps}",
        f"--model.pretrain_steps={pretrain}",
        f"--trainer.default_root_dir={root}",
        *fit_device_options(args.processes),
    )
    # Before anything is prepared, evaluated or trained: the options and configs escx fit
    # will get, and a run folder that holds another run.
    check_fit_commands([cmd], ["the demo's escx fit options"])
    check_run_folder(cmd, root)

    import torch

    import escx
    from escx.audio import find_audio_files

    data = prepare_data(args.data)
    synthetic = is_synthetic(data)
    if synthetic:
        say(synthetic_warning(data, root))
    files = find_audio_files(data / "val")[: args.eval_files]
    if not files:
        raise CommandError(f"no validation audio in {data / 'val'}")
    with_models = not args.no_model_metrics
    torch.manual_seed(53)
    before = escx.build_codec(*configs).eval()
    evaluate(before, files, "before training", streams=[1, 6], with_models=with_models)

    recipe = describe_recipe(args.recipe, configs)
    where = f" on {args.processes} CPU processes" if args.processes > 1 else ""
    say(f"\n== training with the {recipe}: {pretrain} pre-training steps, then quantized{where}")
    say(f"escx {' '.join(cmd[3:])}")
    code = run_fit(cmd, root, "the demo codec")  # RunStopped: last.ckpt is written, demo resumes
    if code != 0:
        raise CommandError(f"training failed (exit {code}, see above)", code=code)
    ckpt = root / "checkpoints" / "last.ckpt"
    report = root / "report"
    steps = _steps_trained(root, args.steps)
    rows = evaluate(
        ckpt, files, f"after {steps} steps (every bitrate)", report=report,
        caption=f"Trained {steps} steps with the {recipe}{where}.", with_models=with_models,
        extra={"recipe": args.recipe, "configs": [repo_relative(c) for c in configs]},
    )  # fmt: skip
    _compress_example(ckpt, files[0], root)
    page = report / "report.html"
    say(f"\nrun folder: {root} (checkpoints, config.yaml, W&B offline run in {root}/wandb)")
    say(f"listening report: {page.resolve()} (open it in a browser)")
    train_files = len(find_audio_files(data / "train"))
    if synthetic:
        say(synthetic_warning(data, root))
    say(summary_line(steps, args.recipe, data, train_files, synthetic, rows, page, args.processes))
    return 0


def _steps_trained(root: Path, default: int) -> int:
    """Training steps of the finished run (from its metrics.json), else ``default``."""
    try:
        summary = json.loads((root / "metrics.json").read_text())
    except (OSError, ValueError):
        return default
    return int(summary.get("batches_seen") or summary.get("global_step") or default)


def _compress_example(ckpt: Path, source: Path, root: Path) -> None:
    """Compress ``source`` at 3 and 9 kbps into ``root`` and decompress it, printing sizes."""
    from escx.api import load_codec
    from escx.audio import read_audio
    from escx.metrics import MelDistance, PESQWideband

    handle = load_codec(ckpt)
    say(f"\n== compressing {source}")
    original, _ = read_audio(source, handle.sample_rate)
    for kbps in (3.0, 9.0):
        packed = root / f"example-{kbps:g}kbps.escx"
        restored = root / f"example-{kbps:g}kbps.wav"
        done = handle.compress(source, packed, kbps=kbps)
        handle.decompress(packed, restored)
        audio, _ = read_audio(restored, handle.sample_rate)
        pesq, mel = PESQWideband(), MelDistance()
        pesq.update(audio[None], original[None])
        mel.update(audio[None], original[None])
        say(
            f"{kbps:g} kbps: {source.stat().st_size:,} B source -> {done.num_bytes:,} B .escx "
            f"({done.kbps:.2f} kbps on disk) -> {restored} ({restored.stat().st_size:,} B); "
            f"PESQ {float(pesq.compute()):.2f}, mel distance {float(mel.compute()):.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
