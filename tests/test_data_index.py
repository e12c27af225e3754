"""The data index and ``escx data`` through the installed command, and the training sources'
bad input through ``escx fit``: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from training_helpers import ESC, TINY

ESCX = str(Path(sys.executable).parent / "escx")  # the console script pip installed
PYTHON_M = [sys.executable, "-m", "escx.cli"]


def write_numbered(folder: Path, count: int, seconds: float = 0.5) -> Path:
    """FLAC files whose every sample is (i + 1) / 1024: a crop tells which file it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        audio = np.full(int(seconds * 16000), (i + 1) / 1024, dtype=np.float32)
        sf.write(folder / f"f{i:03d}.flac", audio, 16000)
    return folder


def _run(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "WANDB_MODE": "disabled", **env}
    return subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _one_error(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("escx: error: "), result.stderr[-3000:]
    for word in words:
        assert word in lines[0], lines[0]


def _state(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}  # fmt: skip


def test_index_is_reused_and_only_changed_files_are_checked(tmp_path):
    corpus = write_numbered(tmp_path / "corpus", 6)
    (corpus / "broken.wav").write_bytes(b"RIFF but not audio")
    index = ["data", "index", "corpus", "-o", "index.csv"]
    first = _run([ESCX, *index], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "7 audio files, 0 unchanged since the index index.csv, 7 checked" in first.stderr
    assert "6 usable files" in first.stdout and "--data.train index.csv" in first.stdout
    with open(tmp_path / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(r["path"]).name for r in rows] == ["broken.wav"] + [f"f{i:03d}.flac" for i in
                                                                      range(6)]  # fmt: skip
    assert "not a readable audio file" in rows[0]["error"]
    assert {(r["frames"], r["sample_rate"], r["channels"]) for r in rows[1:]} == {
        ("8000", "16000", "1")
    }
    written = (tmp_path / "index.csv").stat().st_mtime_ns

    again = _run([*PYTHON_M, *index], tmp_path)  # nothing changed: nothing opened or rewritten
    assert "7 audio files, 7 unchanged since the index index.csv, 0 checked" in again.stderr
    assert (tmp_path / "index.csv").stat().st_mtime_ns == written

    os.utime(corpus / "f001.flac", ns=(1, 1))  # changed, new, gone
    write_numbered(tmp_path / "more", 1)
    (tmp_path / "more" / "f000.flac").rename(corpus / "new.flac")
    (corpus / "f002.flac").unlink()
    third = _run([ESCX, *index], tmp_path)
    assert "7 audio files, 5 unchanged since the index index.csv, 2 checked" in third.stderr
    with open(tmp_path / "index.csv", newline="") as handle:
        names = [Path(r["path"]).name for r in csv.DictReader(handle)]
    assert "new.flac" in names and "f002.flac" not in names

    (tmp_path / "notes.csv").write_text("my,own\n1,2\n")  # never overwritten
    before = _state(tmp_path)
    _one_error(_run([*PYTHON_M, "data", "index", "corpus", "-o", "notes.csv"], tmp_path),
               "not an escx data index")  # fmt: skip
    assert _state(tmp_path) == before


def test_escx_data_shard_writes_whole_shards_of_the_files_bytes(tmp_path):
    corpus = write_numbered(tmp_path / "corpus", 10)
    (corpus / "empty.wav").write_bytes(b"")
    result = _run([ESCX, "data", "shard", "corpus", "-o", "shards", "--shard-size", "1KB"],
                  tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    shards = sorted((tmp_path / "shards").iterdir())
    assert len(shards) > 1 and all(s.suffix == ".tar" for s in shards)
    assert f"--data.train 'shards/shard-{{000000..{len(shards) - 1:06d}}}.tar'" in result.stdout
    assert "10 files in" in result.stdout and "1 unusable files skipped" in result.stdout
    members: dict[str, bytes] = {}
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                members[member.name] = tar.extractfile(member).read()
    audio = sorted(n for n in members if n.endswith(".flac"))
    assert len(audio) == 10 and all(n.replace(".flac", ".json") in members for n in audio)
    for name in audio:  # the file's own bytes, its origin in the JSON beside it
        meta = json.loads(members[name.replace(".flac", ".json")])
        assert members[name] == (corpus / meta["path"]).read_bytes()
        assert meta["frames"] == 8000 and meta["sample_rate"] == 16000
    before = _state(tmp_path)
    for argv, words in [
        (["corpus", "-o", "shards"], "not an empty folder"),
        (["corpus", "-o", "new", "--shard-size", "5"], "from 100B to 1TB"),
        (["nowhere", "-o", "new"], "no such folder or manifest"),
        (["corpus", "-o", "corpus/inside"], "inside corpus"),
    ]:
        _one_error(_run([ESCX, "data", "shard", *argv], tmp_path), *words.split("|"))
    assert _state(tmp_path) == before


def _bad_sources(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """Each case: --data options, environment, the words of the expected error (the issue's
    three; the other refusals of the same check are tested in process below)."""
    corpus = write_numbered(tmp_path / "corpus", 4)
    subprocess.run([ESCX, "data", "shard", "corpus", "-o", "shards"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    shard = tmp_path / "shards" / "shard-000000.tar"
    (tmp_path / "not-a-tar.tar").write_bytes(b"just some text, no tar header\n" * 40)
    whole = shard.read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[: len(whole) // 2 + 100])  # cut mid-member
    subprocess.run([ESCX, "data", "index", "corpus", "-o", "index.csv"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    corpus.rename(tmp_path / "moved")  # the index now names files that are gone
    return {
        "not a tar": (["--data.train", "not-a-tar.tar"], {}, "not-a-tar.tar is not a tar"),
        "truncated": (["--data.train", "cut.tar"], {}, "cut.tar is truncated"),
        "files moved": (["--data.train", "index.csv"], {}, "the files moved"),
    }


@pytest.mark.slow  # five escx starts: ~20 s on 2 free cores, over a minute on busy ones
def test_bad_training_sources_are_one_line_and_write_nothing(tmp_path):
    cases = _bad_sources(tmp_path)
    before = _state(tmp_path)
    for name, (options, env, words) in cases.items():
        argv = [
            ESCX,
            "fit",
            "--config",
            str(ESC),
            "--config",
            str(TINY),
            "--data.val",
            "null",
            "--trainer.logger",
            "false",
            "--trainer.default_root_dir",
            "run",
            *options,
        ]
        result = _run(argv, tmp_path, **env)
        _one_error(result, words)
        assert _state(tmp_path) == before, name  # no run folder, no index, nothing touched


def test_a_manifest_that_states_lengths_is_read_without_opening_its_files(tmp_path):
    from escx.data.table_sources import manifest_table

    write_numbered(tmp_path / "corpus", 3)
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(["path", "duration", "frames", "sample_rate"])
    writer.writerow(["corpus/f000.flac", "", "", ""])  # no length: checked
    writer.writerow(["corpus/f001.flac", "9.5", "", ""])  # a duration: trusted (not opened)
    writer.writerow(["corpus/f002.flac", "", "44100", "44100"])  # exact length at another rate
    writer.writerow(["corpus/gone.flac", "2.0", "", ""])  # trusted now, skipped when read
    (tmp_path / "list.csv").write_text(rows.getvalue())
    table = manifest_table(tmp_path / "list.csv", 16000, 1, "list")
    assert list(table.frames) == [8000, 152000, 16000, 32000]
    assert [Path(p).name for p in table.paths] == ["f000.flac", "f001.flac", "f002.flac",
                                                   "gone.flac"]  # fmt: skip


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("pipe:cat shards/a.tar", "set ESCX_ALLOW_PIPE=1"),
        ("https://host/a.tar", "pipe:curl -s URL"),
        ("s/a-{000000..999999}.tar", "more than 100,000 shards"),
        ("s/a-{000000..000002}.tar", "s/a-000000.tar: shard not found"),
    ],
)
def test_other_shard_sources_are_refused_before_anything_is_built(source, words):
    from escx.data.datamodule import AudioDataModule
    from escx.data.shard_files import ShardError

    with pytest.raises(ShardError) as refused:
        AudioDataModule(train=source, val=None)
    assert words in str(refused.value)


def test_an_index_in_another_row_order_is_still_reused(tmp_path):
    from escx.data.index import index_file, indexed_folder

    write_numbered(tmp_path / "corpus", 5)
    index = index_file(tmp_path / "idx", tmp_path / "corpus")
    first = indexed_folder(tmp_path / "corpus", index, 16000, 1, "corpus")
    header, *rows = index.read_text().splitlines()
    index.write_text("\n".join([header, *reversed(rows)]) + "\n")  # edited by hand
    written = index.stat().st_mtime_ns
    again = indexed_folder(tmp_path / "corpus", index, 16000, 1, "corpus")
    assert index.stat().st_mtime_ns == written  # every row matched: nothing checked or written
    assert list(again.paths) == list(first.paths) and list(again.frames) == [8000] * 5
