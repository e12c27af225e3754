"""The user's path with a codebook-kind overlay: ``escx fit`` through the console script, then
``escx compress`` / ``decompress`` / ``eval`` with the checkpoint it wrote; and the one-line
start-up error for a learning technique the kind cannot use."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from training_helpers import ESC, REPO, TINY, write_corpus

from escx.bitstream import read_header
from escx.cli import main

ABLATIONS = REPO / "experiments" / "ablations"
ESCX = Path(sys.executable).with_name("escx")  # the console script installed with the package


def _run(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = [str(ESCX), *map(str, args)]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a minute or more of training through the console script
@pytest.mark.timeout(600)
def test_fit_then_compress_decompress_and_eval_with_fsq(tmp_path: Path) -> None:
    train = write_corpus(tmp_path / "train", 4, 0.6, seed=1)
    val = write_corpus(tmp_path / "val", 2, 0.5, seed=2)
    # FSQ [8, 5, 5, 5]: 1000 codes, 10-bit fields, log2(1000) bits of information per code.
    levels = "--model.codec.init_args.quantizer.init_args.codebook_args={levels: [8, 5, 5, 5]}"
    overlay = ABLATIONS / "codebook-fsq.yaml"
    fit = _run("fit", "--config", ESC, "--config", TINY, "--config", overlay, levels,
               "--data.train", train, "--data.val", val, "--trainer.logger", "false",
               "--trainer.default_root_dir", tmp_path / "run")  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    source = val / "clip00.wav"
    packed = tmp_path / "clip.escx"
    compress = _run("compress", source, "-o", packed, "--model", ckpt, "--kbps", "9")
    assert compress.returncode == 0, compress.stderr[-3000:]
    header = read_header(packed.read_bytes())
    assert (header.num_streams, header.num_groups, header.bits_per_code) == (6, 3, 10)
    out = tmp_path / "clip.wav"
    decompress = _run("decompress", packed, "-o", out, "--model", ckpt)
    assert decompress.returncode == 0, decompress.stderr[-3000:]
    assert sf.info(out).frames == sf.info(source).frames
    evaluate = _run("eval", "--model", ckpt, "--data", val, "--streams", "1,6",
                    "-o", tmp_path / "report")  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    rows = json.loads((tmp_path / "report" / "results.json").read_text())["rows"]
    assert [r["kbps"] for r in rows] == pytest.approx([3 * 50 * math.log2(1000) / 1000 * s
                                                       for s in (1, 6)])  # fmt: skip
    assert all(0 < r["bitrate_utilization"] <= 1 for r in rows)


@pytest.mark.parametrize("technique", ["kmeans", "ema", "restarts"])
def test_a_learning_technique_on_fsq_fails_at_start_in_one_line(technique, capsys) -> None:
    overlays = [ABLATIONS / "codebook-fsq.yaml", ABLATIONS / f"codebook-{technique}.yaml"]
    args = ["fit", "--config", str(ESC)]
    for overlay in overlays:
        args += ["--config", str(overlay)]
    try:
        code = main([*args, "--trainer.max_steps=0"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("escx:")]
    assert len(ours) == 1 and "has no meaning for codebook FSQ" in ours[0], ours
