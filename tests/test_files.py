"""escx.files in-process: output classification, the atomic writer's refusals, folder scans.

The user-facing behaviour (through the ``escx`` command) is in test_hostile_outputs.py; these
check the rules case by case in milliseconds.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from pathlib import Path

import pytest

from escx.atomic import atomic_path
from escx.audio import AudioError, find_audio_files
from escx.files import scan
from escx.files.scan import ScanError, find_files
from escx.files.targets import check_not_input, check_output_suffix, output_target


def _wav(name: str) -> bool:
    return name.endswith(".wav")


def touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---- scans ------------------------------------------------------------------------------------


def test_scan_enters_each_folder_once_and_lists_each_file_once(tmp_path):
    touch(tmp_path / "a" / "one.wav")
    touch(tmp_path / "b" / "two.wav")
    (tmp_path / "a" / "up").symlink_to("..")  # loop 1: back to the root
    (tmp_path / "a" / "to-b").symlink_to("../b")  # loop 2: a -> b -> a
    (tmp_path / "b" / "to-a").symlink_to("../a")
    (tmp_path / "alias.wav").symlink_to("a/one.wav")  # a second path to a file
    os.link(tmp_path / "b" / "two.wav", tmp_path / "b" / "two-again.wav")  # a hard link
    (tmp_path / "outside").mkdir()
    touch(tmp_path.parent / f"{tmp_path.name}-extra" / "three.wav")
    (tmp_path / "linked").symlink_to(tmp_path.parent / f"{tmp_path.name}-extra")
    found = [p.relative_to(tmp_path).as_posix() for p in find_files(tmp_path, _wav)]
    # Real paths win over links; of two real paths (hard links) the first in name order.
    assert found == ["a/one.wav", "b/two-again.wav", "linked/three.wav"]


def test_scan_skips_fifos_and_dangling_links_with_one_warning(tmp_path, caplog):
    touch(tmp_path / "ok.wav")
    os.mkfifo(tmp_path / "pipe.wav")  # reading it would block forever
    (tmp_path / "gone.wav").symlink_to("missing.wav")
    (tmp_path / "self.wav").symlink_to("self.wav")
    touch(tmp_path / ".hidden" / "h.wav")
    with caplog.at_level(logging.WARNING, logger="escx.files.scan"):
        assert find_audio_files(tmp_path) == [tmp_path / "ok.wav"]
    assert len(caplog.records) == 1 and "skipped 3 entries" in caplog.records[0].message
    with pytest.raises(AudioError, match="neither a folder nor a regular audio file"):
        find_audio_files(tmp_path / "pipe.wav")


def test_scan_depth_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(scan, "MAX_SCAN_DEPTH", 3)
    touch(tmp_path / "1" / "2" / "3" / "ok.wav")
    assert len(find_files(tmp_path, _wav)) == 1
    touch(tmp_path / "1" / "2" / "3" / "4" / "deep.wav")
    with pytest.raises(ScanError, match="nested more than 3 deep"):
        find_files(tmp_path, _wav)
    with pytest.raises(AudioError, match="nested more than 3 deep"):
        find_audio_files(tmp_path)


# ---- output targets ---------------------------------------------------------------------------


def test_output_kinds(tmp_path):
    touch(tmp_path / "file.escx")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link.escx").symlink_to("file.escx")
    (tmp_path / "dangling.escx").symlink_to("nowhere.escx")
    (tmp_path / "loop").symlink_to("loop")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        assert not output_target(tmp_path / "new.escx").exists
        assert not output_target(tmp_path / "file.escx" / "x").exists  # folder checks say why
        target = output_target(tmp_path / "file.escx")
        assert target.exists and not target.direct and target.real == tmp_path / "file.escx"
        assert output_target(tmp_path / "pipe").direct
        assert output_target(tmp_path / "link.escx").real == tmp_path / "file.escx"
        for name, words in (
            ("dir", "it is a directory"),
            ("dangling.escx", r"symbolic link to a missing file \(nowhere.escx\)"),
            ("loop", "loop of symbolic links"),
            ("sock", "it is a socket"),
        ):
            with pytest.raises(OSError, match=words):
                output_target(tmp_path / name)
    finally:
        sock.close()


def test_names_are_checked_on_the_link_and_its_target(tmp_path):
    touch(tmp_path / "speech.wav")
    (tmp_path / "codes.escx").symlink_to("speech.wav")
    os.mkfifo(tmp_path / "pipe")
    check_output_suffix(tmp_path / "pipe", "writes bitstreams", (".escx",))  # FIFOs: any name
    check_output_suffix(tmp_path / "ok.escx", "writes bitstreams", (".escx",))
    with pytest.raises(ValueError, match=r"\(it is a link to .*speech.wav\): writes bitstreams"):
        check_output_suffix(tmp_path / "codes.escx", "writes bitstreams", (".escx",))
    with pytest.raises(ValueError, match="must not end in .wav"):
        check_output_suffix(tmp_path / "m.WAV", "writes a checkpoint", refused=(".wav",))
    with pytest.raises(ValueError, match="is the input file"):
        check_not_input(tmp_path / "speech.wav", tmp_path / "codes.escx")
    check_not_input(tmp_path / "speech.wav", tmp_path / "new.escx")


def test_atomic_write_through_a_link_keeps_the_link(tmp_path):
    touch(tmp_path / "real" / "data.json", "old")
    (tmp_path / "real" / "data.json").chmod(0o640)
    (tmp_path / "data.json").symlink_to("real/data.json")
    with atomic_path(tmp_path / "data.json") as tmp:
        assert tmp.parent == tmp_path / "real"  # the rename stays within the target's folder
        tmp.write_text("new")
    assert (tmp_path / "data.json").is_symlink()
    assert (tmp_path / "real" / "data.json").read_text() == "new"
    assert stat.S_IMODE((tmp_path / "real" / "data.json").stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["data.json"]


def test_atomic_write_never_renames_over_a_node_made_meanwhile(tmp_path):
    target = tmp_path / "out.escx"
    with pytest.raises(OSError, match="stopped being a regular file"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"data")
            os.mkfifo(target)  # someone made a FIFO there while escx was writing
    assert stat.S_ISFIFO(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.escx"]


def test_write_into_a_fifo_is_direct(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    reader = os.open(tmp_path / "pipe", os.O_RDONLY | os.O_NONBLOCK)  # a reader is waiting
    try:
        with atomic_path(tmp_path / "pipe") as path:
            assert path == tmp_path / "pipe"
            path.write_bytes(b"codes")
        assert os.read(reader, 100) == b"codes"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


@pytest.mark.skipif(
    not Path("/proc/sys/fs/protected_symlinks").is_file()
    or Path("/proc/sys/fs/protected_symlinks").read_text().strip() != "1",
    reason="fs.protected_symlinks is off on this machine",
)
def test_a_link_the_kernel_would_not_follow_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: sticky and world-writable
    touch(tmp_path / "victim.escx", "precious")
    (shared / "out.escx").symlink_to(tmp_path / "victim.escx")
    try:
        os.lchown(shared / "out.escx", 54321, 54321)  # planted by another user
    except PermissionError:
        pytest.skip("needs root to give the link another owner")
    with pytest.raises(OSError, match="refuses to write through this symbolic link"):
        output_target(shared / "out.escx")
    assert (tmp_path / "victim.escx").read_text() == "precious"
