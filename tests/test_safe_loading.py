"""No file escx reads can run code: a checkpoint whose pickle carries a payload (a __reduce__
that creates a file) is refused by every command that reads checkpoints, and the payload never
runs. The same file, loaded without weights_only, does run it: the payload is live."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tools_fixtures import REFERENCE_FIXTURES, make_checkpoint, speech_like, write_wav
from training_helpers import ESC, TINY, write_corpus

from escx.api import load_codec
from escx.checkpoint import CheckpointError

ESCX = str(Path(sys.executable).parent / "escx")


class Payload:
    """Unpickling this calls ``Path(marker).touch()``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("malicious")
    good = make_checkpoint(folder / "good.ckpt")
    blob = torch.load(good, weights_only=True)
    blob["escx"]["note"] = Payload(folder / "MARKER")  # an escx checkpoint, plus a payload
    torch.save(blob, folder / "evil.ckpt")
    torch.save({"model_state_dict": Payload(folder / "MARKER")}, folder / "evil.pth")
    (folder / "config.yaml").write_text("model_name: csvq\nmodel: {}\n")
    write_wav(folder / "in.wav", speech_like(8000))
    write_corpus(folder / "val", 2, 0.5, seed=4)
    return folder


def test_the_payload_is_live_without_weights_only(work, tmp_path):
    control = tmp_path / "ran"
    torch.save({"x": Payload(control)}, tmp_path / "control.pt")
    subprocess.run([sys.executable, "-c", "import torch, sys; "
                    f"torch.load({str(tmp_path / 'control.pt')!r}, weights_only=False)"],
                   check=True)  # fmt: skip
    assert control.exists()


def test_load_codec_refuses_it(work):
    with pytest.raises(CheckpointError, match="could run code"):
        load_codec(work / "evil.ckpt")
    assert not (work / "MARKER").exists()


COMMANDS = {
    "compress": ["compress", "in.wav", "-o", "out.escx", "--model", "evil.ckpt"],
    "eval": ["eval", "--model", "evil.ckpt", "--data", "val", "-o", "report"],
    "convert": ["convert", "evil.pth", "--ref-config", "config.yaml", "-o", "out.ckpt"],
    "validate": ["validate", "--config", str(ESC), "--config", str(TINY), "--data.val", "val",
                 "--trainer.logger", "false", "--ckpt_path", "evil.ckpt"],
    "test": ["test", "--config", str(ESC), "--config", str(TINY), "--data.test", "val",
             "--trainer.logger", "false", "--ckpt_path", "evil.ckpt"],
}  # fmt: skip


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_refuses_it_in_one_line(work, name):
    result = subprocess.run(
        [ESCX, *COMMANDS[name]], cwd=work, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "WANDB_MODE": "disabled"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("escx")]
    assert len(errors) == 1 and "could run code" in errors[0], result.stderr[-2000:]
    assert not (work / "MARKER").exists()
    assert not any((work / p).exists() for p in ("out.escx", "out.ckpt", "report"))


@pytest.mark.skipif(not REFERENCE_FIXTURES.is_dir(), reason="no reference fixtures")
def test_a_plain_reference_checkpoint_still_converts(tmp_path):
    from tools_fixtures import unpack_reference_state

    fixture = torch.load(REFERENCE_FIXTURES / "csrvq_swin.pt", weights_only=True)
    torch.save({"model_state_dict": unpack_reference_state(fixture)}, tmp_path / "ref.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    from escx.cli import main

    assert main(["convert", str(tmp_path / "ref.pth"), "-o", str(tmp_path / "m.ckpt")]) == 0
