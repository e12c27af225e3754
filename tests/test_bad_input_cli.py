"""Bad input through the real `escx` command: one line that says what is wrong and what to do,
exit code 2, no traceback, nothing partial left behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tools_fixtures import make_checkpoint, speech_like, write_wav
from training_helpers import ESC

from escx.api import load_codec

ESCX = str(Path(sys.executable).parent / "escx")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    make_checkpoint(folder / "model.ckpt")
    audio = speech_like(16000 * 4)
    write_wav(folder / "in.wav", audio)
    load_codec(folder / "model.ckpt").compress(folder / "in.wav", folder / "in.escx")
    (folder / "notes.txt").write_text("this is a text file\n")
    (folder / "empty" / "val").mkdir(parents=True)  # a data folder without validation audio
    sf.write(folder / "whole.flac", audio, 16000)
    data = (folder / "whole.flac").read_bytes()
    (folder / "cut.flac").write_bytes(data[: len(data) // 2])  # header intact, frames missing
    sf.write(folder / "loud.wav", audio * 1e6, 16000, subtype="FLOAT")
    torch.save({"model_state_dict": {"w": torch.ones(2)}}, folder / "ref.pth")
    return folder


def _file_size_limit() -> None:  # a full disk, as a writer sees it
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


# case -> (arguments, words the one line must hold, the output that must not exist)
CASES = {
    "ablation data missing": (["ablation", "recipe", "--data", "nowhere", "--out", "study"],
                              "audio folder not found: nowhere/val", "study"),
    "ablation val empty": (["ablation", "recipe", "--data", "empty", "--out", "study"],
                           "no validation audio in empty/val", "study"),
    "kbps inf": (["compress", "in.wav", "-o", "o.escx", "--model", "model.ckpt", "--kbps", "inf"],
                 "--kbps inf is not available", "o.escx"),
    "kbps nan": (["compress", "in.wav", "-o", "o.escx", "--model", "model.ckpt", "--kbps", "nan"],
                 "--kbps nan is not available", "o.escx"),
    "text file as model": (["compress", "in.wav", "-o", "o.escx", "--model", "notes.txt"],
                           "not a PyTorch checkpoint (it looks like a text file)", "o.escx"),
    "audio file as model": (["compress", "in.wav", "-o", "o.escx", "--model", "in.wav"],
                            "not a PyTorch checkpoint (it is an audio file)", "o.escx"),
    "audio file to convert": (["convert", "in.wav", "--ref-config", "notes.txt", "-o", "m.ckpt"],
                              "not a PyTorch checkpoint (it is an audio file)", "m.ckpt"),
    "audio file as ref-config": (["convert", "ref.pth", "--ref-config", "in.wav", "-o",
                                  "m.ckpt"], "is not a text file", "m.ckpt"),
    "key typo": (["fit", "--config", str(ESC), "--trainer.max_stepz", "3"],
                 "(see escx fit --help)", "runs"),
    "class-name typo": (["fit", "--config", str(ESC), "--model.codec.init_args.quantizer",
                         "CrossScaleRVQQ"], "did you mean 'CrossScaleRVQ'", "runs"),
    "truncated flac": (["compress", "cut.flac", "-o", "o.escx", "--model", "model.ckpt"],
                       "cut.flac is truncated or damaged", "o.escx"),
    "samples of 1e6": (["compress", "loud.wav", "-o", "o.escx", "--model", "model.ckpt"],
                       "far beyond full scale", "o.escx"),
    "full disk, wav": (["decompress", "in.escx", "-o", "o.wav", "--model", "model.ckpt"],
                       "cannot write o.wav", "o.wav"),
    "full disk, flac": (["decompress", "in.escx", "-o", "o.flac", "--model", "model.ckpt"],
                        "cannot write o.flac", "o.flac"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_code_2(work, case):
    args, words, output = CASES[case]
    result = subprocess.run(
        [ESCX, *args], cwd=work, capture_output=True, text=True, timeout=300,
        env={**os.environ, "WANDB_MODE": "disabled"},
        preexec_fn=_file_size_limit if case.startswith("full disk") else None,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx"), result.stderr[-2000:]
    assert words in lines[0] and len(lines[0]) < 400
    assert not (work / output).exists()
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]  # no temporaries


def test_two_compressions_to_one_path_leave_one_complete_file(work, tmp_path):
    target = tmp_path / "same.escx"
    runs = [
        subprocess.Popen(
            [
                ESCX,
                "compress",
                str(work / "in.wav"),
                "-o",
                str(target),
                "--model",
                str(work / "model.ckpt"),
                "--kbps",
                kbps,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for kbps in ("9", "1.5")
    ]
    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    header, codes = load_codec(work / "model.ckpt").read(target)  # whole and verified
    assert header.num_streams in (1, 6) and codes.shape[1] == header.num_streams
    assert [p.name for p in tmp_path.iterdir()] == ["same.escx"]


def test_loud_but_plausible_float_audio_still_compresses(work, tmp_path):
    sf.write(tmp_path / "hot.wav", np.clip(speech_like(8000) * 6, -8, 8), 16000, subtype="FLOAT")
    result = subprocess.run(
        [ESCX, "compress", "hot.wav", "-o", "hot.escx", "--model", str(work / "model.ckpt")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
