"""``make demo``: prepare data, train a small ESC on CPU for a few minutes, evaluate, compress.

Steps, each printed as it happens:

1. data: ``DATA=DIR`` (a folder with train/ and val/, or any audio folder, which is split),
   else ``data/`` from ``make data`` (Hugging Face when online, synthetic speech-like audio when
   not);
2. the untrained model is evaluated on a few validation files (the "before" numbers);
3. ``escx fit`` trains ``experiments/esc.yaml`` + ``experiments/tiny.yaml`` through pre-training
   into quantized training (W&B offline, run folder ``runs/demo``; run again, the demo resumes
   that run where it stopped, or reuses it when it finished);
4. the trained model is evaluated at every bitrate (the same code as ``escx eval``);
5. one validation file is compressed at 3 and 9 kbps and decompressed, with file sizes and
   metrics printed;
6. the listening report of step 4 (``report/report.html`` in the run folder: players, spectrograms,
   table, plots) is written and its path printed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from escx.commands.common import CommandError, say

ROOT = Path("runs/demo")
CONFIGS = ["experiments/esc.yaml", "experiments/tiny.yaml"]


def prepare_data(data: str | None) -> Path:
    if data is not None:
        folder = Path(data)
        if (folder / "train").is_dir() and (folder / "val").is_dir():
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
        raise SystemExit(code)
    return Path("data")


def evaluate(
    codec_or_ckpt, files: list[Path], title: str, streams=None, report: Path | None = None
) -> list[dict]:
    """Evaluate and print the table; with ``report``, also write the listening report there."""
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
    rows = evaluate_codec(handle, files, streams=streams, with_stoi=True, listen=listen)
    say(f"\n== {title}\n")
    say(markdown_table(rows))
    if report is not None:
        caption = describe(handle, files[0].parent, rows)
        write_report(rows, report, f"escx demo: {title}", caption, listening=listening)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m escx.demo")
    parser.add_argument("--data", default=None, help="audio folder (default: data/)")
    parser.add_argument("--steps", type=int, default=150, help="training steps")
    parser.add_argument("--eval-files", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT, help=f"run folder (default: {ROOT})")
    args = parser.parse_args(argv)
    root = args.out
    os.environ.setdefault("WANDB_MODE", "offline")

    import torch

    import escx
    from escx.audio import find_audio_files

    data = prepare_data(args.data)
    files = find_audio_files(data / "val")[: args.eval_files]
    if not files:
        say(f"escx demo: error: no validation audio in {data / 'val'}")
        return 2
    torch.manual_seed(53)
    evaluate(escx.build_codec(*CONFIGS).eval(), files, "before training", streams=[1, 6])

    pretrain = max(1, args.steps // 3)
    from escx.experiments.runs import RunStopped, fit_command, run_fit

    cmd = fit_command(
        CONFIGS,
        f"--data.train={data / 'train'}",
        f"--data.val={data / 'val'}",
        f"--trainer.max_steps={args.steps}",
        f"--trainer.val_check_interval={args.steps}",
        f"--model.pretrain_steps={pretrain}",
        f"--trainer.default_root_dir={root}",
    )
    say(f"\n== training ({pretrain} pre-training steps, then quantized): escx {' '.join(cmd[3:])}")
    try:
        code = run_fit(cmd, root, "the demo codec")
    except RunStopped as stop:  # Ctrl-C or SIGTERM: last.ckpt is written, `make demo` resumes
        say(f"escx demo: {stop}")
        return stop.code
    except CommandError as error:
        say(f"escx demo: error: {error}")
        return error.code
    if code != 0:
        say(f"escx demo: error: training failed (exit {code}, see above)")
        return code
    ckpt = root / "checkpoints" / "last.ckpt"
    report = root / "report"
    evaluate(ckpt, files, f"after {args.steps} steps (every bitrate)", report=report)

    from escx.api import load_codec
    from escx.audio import read_audio
    from escx.metrics import MelDistance, PESQWideband

    handle = load_codec(ckpt)
    source = files[0]
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
    say(f"\nrun folder: {root} (checkpoints, config.yaml, W&B offline run in {root}/wandb)")
    say(f"listening report: {(report / 'report.html').resolve()} (open it in a browser)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
