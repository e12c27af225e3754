"""Outputs that are not new regular files, and scans over link loops, through the real command.

escx runs as root in containers, where replacing ``/dev/null`` by a regular file breaks the
machine: device nodes must stay devices, FIFOs must stay FIFOs (and receive the data), symbolic
links stay links whose target is replaced, misnamed outputs are refused in one line, and folder
scans finish and count each file once. Every node is made in a temporary folder (``os.mknod``
makes a second ``/dev/null`` (1, 3) or ``/dev/full`` (1, 7)); the machine's own are never used.
"""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from tools_fixtures import (
    REFERENCE_FIXTURES,
    make_checkpoint,
    speech_like,
    unpack_reference_state,
    write_wav,
)

from escx.api import load_codec
from escx.bitstream import truncate_bitstream

ESCX = str(Path(sys.executable).parent / "escx")
ENTRIES = {"console": [ESCX], "module": [sys.executable, "-m", "escx.cli"]}
NULL, FULL = (1, 3), (1, 7)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """model.ckpt, in.wav (0.5 s), in.escx, and a reference ESC checkpoint ref.pth + config.yaml."""
    folder = tmp_path_factory.mktemp("hostile")
    make_checkpoint(folder / "model.ckpt")
    write_wav(folder / "in.wav", speech_like(8000))
    load_codec(folder / "model.ckpt").compress(folder / "in.wav", folder / "in.escx")
    fixture = torch.load(REFERENCE_FIXTURES / "csrvq_swin.pt", weights_only=True)
    torch.save({"model_state_dict": unpack_reference_state(fixture)}, folder / "ref.pth")
    (folder / "config.yaml").write_text(yaml.safe_dump(fixture["config"]))
    return folder


def escx(entry: str, *args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ENTRIES[entry], *map(str, args)], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "WANDB_MODE": "disabled"},
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, words: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx: error:"), result.stderr[-2000:]
    assert words in lines[0], lines[0]
    return lines[0]


def succeeded(result: subprocess.CompletedProcess) -> None:
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert result.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]


def char_device(path: Path, numbers: tuple[int, int]) -> Path:
    """A character device node at ``path`` (skips the test where mknod is not permitted)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(*numbers))
    except PermissionError as error:
        pytest.skip(f"cannot make device nodes here ({error.strerror}); needs root")
    return path


def assert_device(path: Path, numbers: tuple[int, int]) -> None:
    info = os.lstat(path)
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == os.makedev(*numbers), oct(info.st_mode)


@contextmanager
def fifo_reader(path: Path) -> Iterator[list[bytes]]:
    """Make a FIFO at ``path`` and read everything written into it on a thread (what a player
    would do); yields a list that holds the bytes once the block ends."""
    os.mkfifo(path)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(path.read_bytes()), daemon=True)
    reader.start()
    try:
        yield got
    finally:
        if reader.is_alive() and not got:
            try:  # the writer never came (it failed first): let the reader see an empty stream
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        reader.join(timeout=30)
        assert stat.S_ISFIFO(os.lstat(path).st_mode)


def hidden(folder: Path) -> list[str]:
    """Temporary files left behind (escx's temporaries are hidden files)."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ---- fast: truncate (no model) into every kind of output --------------------------------------


@pytest.mark.parametrize(
    "kind, entry",
    [
        ("null", "console"),
        ("full", "module"),
        ("fifo", "console"),
        ("link", "module"),
        ("stdout", "console"),
    ],
)
def test_truncate_into_devices_fifos_and_links(work, tmp_path, kind, entry):
    expected = truncate_bitstream((work / "in.escx").read_bytes(), 2)
    args = ("truncate", work / "in.escx", "--streams", "2", "-o")
    if kind == "null":
        node = char_device(tmp_path / "null", NULL)
        result = escx(entry, *args, node, cwd=tmp_path)
        succeeded(result)
        assert "kept 2 of 6 streams" in result.stdout
        assert_device(node, NULL)
    elif kind == "full":
        node = char_device(tmp_path / "full", FULL)
        line = one_line_error(escx(entry, *args, node, cwd=tmp_path), "No space left on device")
        assert f"cannot write {node}" in line
        assert_device(node, FULL)
    elif kind == "fifo":
        with fifo_reader(tmp_path / "pipe") as got:
            result = escx(entry, *args, tmp_path / "pipe", cwd=tmp_path)
        succeeded(result)
        assert got == [expected]
    elif kind == "stdout":  # -o /dev/stdout into a pipe: the data alone, the summary on stderr
        (tmp_path / "stdout").symlink_to("/proc/self/fd/1")  # our own /dev/stdout
        result = subprocess.run(
            [*ENTRIES[entry], *map(str, args), tmp_path / "stdout"], cwd=tmp_path,
            capture_output=True, timeout=120,
        )  # fmt: skip
        succeeded(result)
        assert result.stdout == expected and b"kept 2 of 6 streams" in result.stderr
        assert os.readlink(tmp_path / "stdout") == "/proc/self/fd/1"
    else:  # a link keeps being a link; the file it points to is replaced
        (tmp_path / "real").mkdir()
        (tmp_path / "real" / "t.escx").write_bytes(b"old")
        (tmp_path / "link.escx").symlink_to("real/t.escx")
        result = escx(entry, *args, tmp_path / "link.escx", cwd=tmp_path)
        succeeded(result)
        assert os.readlink(tmp_path / "link.escx") == "real/t.escx"
        assert (tmp_path / "real" / "t.escx").read_bytes() == expected
        assert hidden(tmp_path / "real") == []
    assert hidden(tmp_path) == []


# ---- fast: outputs refused before any work ----------------------------------------------------


def _setup_refusals(work: Path, folder: Path) -> None:
    os.link(work / "in.escx", folder / "hard.escx")
    (folder / "to-input.escx").symlink_to(work / "in.wav")
    (folder / "dangling.escx").symlink_to("missing.escx")
    (folder / "loop1.escx").symlink_to("loop2.escx")
    (folder / "loop2.escx").symlink_to("loop1.escx")
    (folder / "out" / "in.escx").mkdir(parents=True)  # where `-o out` would write


# case -> (entry, arguments, words of the one line); {w} is the folder with the inputs
REFUSALS = {
    "bitstream named .mp3": ("console", ["compress", "{w}/in.wav", "-o", "x.mp3", "--model",
                             "{w}/model.ckpt"], "-o x.mp3: escx compress writes .escx bitstreams"),
    "audio named .escx": ("module", ["decompress", "{w}/in.escx", "-o", "x.escx", "--model",
                          "{w}/model.ckpt"], "the output name must end in .wav or .flac"),
    "bitstream named .wav": ("console", ["truncate", "{w}/in.escx", "--streams", "1", "-o",
                             "x.wav"], "the output name must end in .escx"),
    "checkpoint named .wav": ("module", ["convert", "{w}/ref.pth", "-o", "x.wav"],
                              "escx convert writes a checkpoint; the output name must not end"),
    "output is the input": ("console", ["truncate", "{w}/in.escx", "--streams", "1", "-o",
                            "{w}/in.escx"], "is the input file"),
    "hard link to the input": ("module", ["truncate", "{w}/in.escx", "--streams", "1", "-o",
                               "hard.escx"], "-o hard.escx is the input file"),
    "link to an audio file": ("console", ["compress", "{w}/in.wav", "-o", "to-input.escx",
                              "--model", "{w}/model.ckpt"], "(it is a link to {w}/in.wav)"),
    "dangling link": ("module", ["truncate", "{w}/in.escx", "--streams", "1", "-o",
                      "dangling.escx"], "symbolic link to a missing file (missing.escx)"),
    "loop of links": ("console", ["truncate", "{w}/in.escx", "--streams", "1", "-o",
                      "loop1.escx"], "loop of symbolic links"),
    "directory in the way": ("module", ["truncate", "{w}/in.escx", "--streams", "1", "-o", "out"],
                             "cannot write out/in.escx: it is a directory"),
}  # fmt: skip


# Each case is a process start (~2 s of CPU): two stay in the fast suite, the rest run as slow.
FAST_REFUSALS = ("bitstream named .mp3", "loop of links")


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=() if c in FAST_REFUSALS else pytest.mark.slow) for c in REFUSALS],
)
def test_misnamed_or_clashing_outputs_are_refused(work, tmp_path, case):
    _setup_refusals(work, tmp_path)
    entry, args, words = REFUSALS[case]
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    links = {p.name: os.readlink(p) for p in tmp_path.iterdir() if p.is_symlink()}
    result = escx(entry, *(a.format(w=work) for a in args), cwd=tmp_path)
    one_line_error(result, words.format(w=work))
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == before
    assert {p.name: os.readlink(p) for p in tmp_path.iterdir() if p.is_symlink()} == links
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*links, "hard.escx", "out"])
    assert (tmp_path / "out" / "in.escx").is_dir() and hidden(tmp_path) == []


# ---- fast: the training data scan over link loops ---------------------------------------------


def looped_data(root: Path) -> Path:
    """Two speakers, two loops (a link to the parent, two folders linking to each other) and a
    second path to one file: 2 real files."""
    for speaker, seed in (("spk1", 0), ("spk2", 1)):
        write_wav(root / "data" / speaker / f"{speaker}.wav", speech_like(8000, seed=seed))
    data = root / "data"
    (data / "spk1" / "up").symlink_to("..")
    (data / "spk1" / "to2").symlink_to("../spk2")
    (data / "spk2" / "to1").symlink_to("../spk1")
    (data / "alias.wav").symlink_to("spk1/spk1.wav")
    return data


# The folder scan of `escx fit --data.train DIR` (what AudioDataModule calls for a folder; the
# whole data module costs 6 s of imports and runs in the slow test below).
SCAN = """
from escx.data.sources import folder_items
print(len(folder_items("data")), *sorted(item.name for item in folder_items("data")))
"""
DATAMODULE_SCAN = """
from escx.data.datamodule import AudioDataModule
ds = AudioDataModule(train="data", val=None, segment_samples=8000).build("train")
print(len(ds), *sorted(f.item.name for f in ds.files))
"""
# alias.wav is a second path to spk1.wav: the file is listed once, under its real path.
LOOPED_FILES = ["2", "data/spk1/spk1.wav", "data/spk2/spk2.wav"]


def scan_in_subprocess(code: str, cwd: Path) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    succeeded(result)
    return result.stdout.split()


def test_training_data_scan_over_link_loops_counts_each_file_once(tmp_path):
    looped_data(tmp_path)
    assert scan_in_subprocess(SCAN, tmp_path) == LOOPED_FILES


# ---- slow: the model-based tools into devices, FIFOs and links --------------------------------


def _model_command(command: str, work: Path, output: Path) -> list:
    if command == "compress":
        return ["compress", work / "in.wav", "-o", output, "--model", work / "model.ckpt"]
    if command == "decompress":
        return ["decompress", work / "in.escx", "-o", output, "--model", work / "model.ckpt"]
    return ["convert", work / "ref.pth", "-o", output]


def _reference_output(command: str, work: Path, folder: Path) -> bytes | np.ndarray:
    """What the command writes into a regular file (made through the Python API): the bytes of
    an .escx file, or the 16-bit samples of a wav file."""
    handle = load_codec(work / "model.ckpt")
    if command == "compress":
        handle.compress(work / "in.wav", folder / "ref.escx")
        return (folder / "ref.escx").read_bytes()
    handle.decompress(work / "in.escx", folder / "ref.wav")
    return sf.read(folder / "ref.wav", dtype="int16")[0]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["compress", "decompress", "convert"])
def test_model_tools_into_devices_fifos_and_links(work, tmp_path, command):
    entries = ["console", "module"] if command != "decompress" else ["module", "console"]
    null = char_device(tmp_path / "null", NULL)
    full = char_device(tmp_path / "full", FULL)
    for entry, node in zip(entries, (null, full), strict=True):
        result = escx(entry, *_model_command(command, work, node), cwd=tmp_path)
        if node == null:
            succeeded(result)
        else:
            one_line_error(result, f"cannot write {full}: No space left on device")
    assert_device(null, NULL)
    assert_device(full, FULL)
    with fifo_reader(tmp_path / "pipe") as got:
        result = escx(entries[0], *_model_command(command, work, tmp_path / "pipe"), cwd=tmp_path)
    succeeded(result)
    if command == "convert":  # a checkpoint streamed into a FIFO is a whole checkpoint
        (tmp_path / "from-pipe.ckpt").write_bytes(got[0])
        assert load_codec(tmp_path / "from-pipe.ckpt").codec is not None
    elif command == "compress":  # the same bytes as an .escx file
        assert got[0] == _reference_output(command, work, tmp_path)
    else:  # a WAV stream (length unknown when it starts) of the same samples as a file
        samples, rate = sf.read(io.BytesIO(got[0]), dtype="int16")
        assert rate == 16000 and np.array_equal(samples, _reference_output(command, work, tmp_path))
    name = {"compress": "x.escx", "decompress": "x.wav", "convert": "x.ckpt"}[command]
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / name).write_bytes(b"old")
    (tmp_path / f"link-{name}").symlink_to(f"real/{name}")
    result = escx(entries[1], *_model_command(command, work, tmp_path / f"link-{name}"),
                  cwd=tmp_path)  # fmt: skip
    succeeded(result)
    assert os.readlink(tmp_path / f"link-{name}") == f"real/{name}"
    assert (tmp_path / "real" / name).read_bytes() != b"old"
    assert hidden(tmp_path) == [] and hidden(tmp_path / "real") == []


@pytest.mark.slow
def test_eval_and_data_module_over_link_loops_count_each_file_once(work, tmp_path):
    looped_data(tmp_path)
    assert scan_in_subprocess(DATAMODULE_SCAN, tmp_path) == LOOPED_FILES
    result = escx(
        "console", "eval", "--model", work / "model.ckpt", "--data", "data", "--streams", "6",
        "--no-model-metrics", "--no-stoi", "-o", "report", cwd=tmp_path, timeout=300,
    )  # fmt: skip
    succeeded(result)
    assert "on data: 2 files" in result.stdout, result.stdout
