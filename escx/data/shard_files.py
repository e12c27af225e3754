"""WebDataset tar shards: naming them, reading their samples, and checking them before training.

A shard is a tar file whose members are grouped into samples by name: ``000123.flac`` and
``000123.json`` form sample ``000123`` (WebDataset's convention, the ``webdataset`` package's
``base_plus_ext``). escx uses the first member of a sample with an audio extension
(``.wav``/``.flac``/``.ogg``/``.mp3``); samples without one are ignored.

A source names shards with a brace pattern (``shards/train-{000000..000099}.tar``) of local
files, or ``pipe:COMMAND`` whose output is a tar (``pipe:curl -s https://host/a.tar``). A pipe
runs a shell command, and escx never runs code because a config file said so: ``pipe:``
sources are refused unless ``$ESCX_ALLOW_PIPE=1`` is set by the user running escx.

:func:`check_shard` reads every member header of a local shard (seeking over the data, so a
1 GB shard costs milliseconds) and counts its samples; a file that is not a tar, a shard cut
short (a member running past the end, or no end-of-archive blocks) and a shard without audio
are refused before training with one line. A ``pipe:`` shard is read through once to count it.
"""

from __future__ import annotations

import itertools
import os
import tarfile
from collections.abc import Iterator
from typing import NamedTuple

from escx.audio import AUDIO_EXTENSIONS
from escx.data.sources import PIPE_PREFIX

# A brace pattern may expand to any number of names; more than this many shards is a typo
# ({0..99999999}) rather than a corpus (100,000 shards of 1 GB hold 100 TB).
MAX_SHARDS = 100_000
# Audio members are read whole into memory: one larger than this (an hour of 48 kHz stereo WAV
# is about 1 GB) is refused when the shard is checked, and skipped if it appears later.
MAX_SAMPLE_BYTES = 512 * 2**20
ALLOW_PIPE_VARIABLE = "ESCX_ALLOW_PIPE"
_AUDIO = {ext.lstrip(".") for ext in AUDIO_EXTENSIONS}


class ShardError(ValueError):
    """A shard source that cannot be used; the message is one line saying what to do."""


class ShardInfo(NamedTuple):
    """What checking a shard found: its audio sample count, or why it cannot be used."""

    samples: int
    size: int
    mtime_ns: int
    error: str


def require_webdataset() -> None:
    """Raise a one-line :class:`ShardError` naming the extra when ``webdataset`` is missing."""
    from importlib.util import find_spec

    if find_spec("webdataset") is None:
        raise ShardError(
            "WebDataset shards need the webdataset package: "
            "pip install -c constraints.txt -e '.[data]' (or pip install webdataset)"
        )


def pipe_allowed() -> bool:
    return os.environ.get(ALLOW_PIPE_VARIABLE, "") == "1"


def expand_shards(spec: str) -> list[str]:
    """The shard names of a source string: brace patterns expanded, in order.

    Raises:
        ShardError: a pattern of more than :data:`MAX_SHARDS` names, a ``pipe:`` source without
            ``$ESCX_ALLOW_PIPE=1``, or a remote URL (use ``pipe:curl``).
    """
    require_webdataset()
    import braceexpand  # a dependency of webdataset

    names = list(itertools.islice(braceexpand.braceexpand(spec), MAX_SHARDS + 1))
    if len(names) > MAX_SHARDS:
        raise ShardError(f"{spec} names more than {MAX_SHARDS:,} shards; check the brace pattern")
    for name in names:
        if name.startswith(PIPE_PREFIX) and not pipe_allowed():
            raise ShardError(
                f"{name}: a pipe: source runs a shell command, which escx does not do because a "
                f"config said so; set {ALLOW_PIPE_VARIABLE}=1 in the environment to allow it"
            )
        if "://" in name.split(" ")[0] and not name.startswith(PIPE_PREFIX):
            raise ShardError(
                f"{name}: remote shards are read through a command: pipe:curl -s URL "
                f"(with {ALLOW_PIPE_VARIABLE}=1)"
            )
    return names


def _audio_key(name: str) -> tuple[str, bool] | None:
    """(sample key, is audio) of a member name, or None for names that form no sample."""
    from webdataset.tariterators import base_plus_ext

    key, ext = base_plus_ext(name)
    if key is None:
        return None
    return key, ext.rsplit(".", 1)[-1].lower() in _AUDIO


def open_shard(url: str):
    """A binary stream of the shard (a local file, or a command's output)."""
    if url.startswith(PIPE_PREFIX):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    return open(url, "rb")


def iter_samples(url: str, with_data: bool = True) -> Iterator[tuple[str, bytes | None]]:
    """(key, audio bytes) of each audio sample of a shard, in tar order.

    With ``with_data=False`` the bytes are not read (``None``); local shards then seek over them.

    Raises:
        tarfile.TarError, OSError: the shard cannot be read (any more).
    """
    with open_shard(url) as stream:
        mode = "r|" if url.startswith(PIPE_PREFIX) else "r:"
        with tarfile.open(fileobj=stream, mode=mode) as tar:
            key, audio = None, None
            for member in tar:
                tar.members = []  # keep memory flat over a large shard
                parsed = _audio_key(member.name) if member.isreg() else None
                if parsed is None:
                    continue
                if parsed[0] != key:
                    if audio is not None:
                        yield key, audio if with_data else None
                    key, audio = parsed[0], None
                if parsed[1] and audio is None:
                    if member.size > MAX_SAMPLE_BYTES:
                        raise tarfile.TarError(_too_large(url, member))
                    audio = tar.extractfile(member).read() if with_data else b""
            if audio is not None:
                yield key, audio if with_data else None


def _check_local(url: str) -> ShardInfo:
    try:
        stat = os.stat(url)
    except OSError as err:
        return ShardInfo(0, 0, 0, f"{url}: shard not found ({err.strerror})")
    size, mtime = stat.st_size, stat.st_mtime_ns
    try:
        with open(url, "rb") as stream, tarfile.open(fileobj=stream, mode="r:") as tar:
            samples, key, end = 0, None, 0
            for member in tar:
                tar.members = []
                end = member.offset_data + member.size
                if end > size:
                    return ShardInfo(0, size, mtime, _truncated(url, member.name, end, size))
                parsed = _audio_key(member.name) if member.isreg() else None
                if parsed is not None and parsed[1] and member.size > MAX_SAMPLE_BYTES:
                    return ShardInfo(0, size, mtime, _too_large(url, member))
                if parsed is not None and parsed[1] and parsed[0] != key:
                    samples, key = samples + 1, parsed[0]
            stream.seek((end + 511) // 512 * 512)
            if stream.read(1024) != bytes(1024):  # a tar ends with two zero blocks
                return ShardInfo(0, size, mtime, _truncated(url, "its last member", end, size))
    except (tarfile.TarError, OSError, EOFError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        return ShardInfo(0, size, mtime, f"{url} is not a tar archive ({reason})")
    return ShardInfo(samples, size, mtime, "" if samples else _no_audio(url))


def _too_large(url: str, member: tarfile.TarInfo) -> str:
    return (
        f"{url}: {member.name} is {member.size:,} bytes, more than the "
        f"{MAX_SAMPLE_BYTES // 2**20} MiB a sample may hold; split long recordings"
    )


def _truncated(url: str, member: str, end: int, size: int) -> str:
    return (
        f"{url} is truncated: {member} ends at byte {end:,} of a {size:,}-byte file with no "
        "end-of-archive after it; copy or write the shard again"
    )


def _no_audio(url: str) -> str:
    return f"{url} holds no audio samples (members named KEY.wav/.flac/.ogg/.mp3)"


def quick_check_shard(url: str) -> str:
    """Why a local shard is unusable at a glance, or "" (one stat and two small reads).

    Catches a missing file, a file that is not a tar (its first header's checksum) and nearly
    every truncated one: a tar is a whole number of 512-byte blocks ending in two zero blocks.
    :func:`check_shard` reads every header; this is the check made before anything is built.
    """
    if url.startswith(PIPE_PREFIX):
        return ""
    try:
        size = os.stat(url).st_size
        with open(url, "rb") as stream:
            head = stream.read(512)
            stream.seek(max(0, size - 1024))
            tail = stream.read(1024)
    except OSError as err:
        return f"{url}: shard not found or unreadable ({err.strerror})"
    try:
        tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError as err:
        if head != bytes(512) or size < 1024:  # an all-zero first block is an empty tar
            return f"{url} is not a tar archive ({err})"
    if size % 512 or tail != bytes(1024):
        return (
            f"{url} is truncated: {size:,} bytes, not a whole tar ending in its end-of-archive "
            "blocks; copy or write the shard again"
        )
    return ""


def check_shard(url: str) -> ShardInfo:
    """Count the audio samples of a shard and check that it is a whole tar file."""
    if not url.startswith(PIPE_PREFIX):
        return _check_local(url)
    try:
        samples = sum(1 for _ in iter_samples(url, with_data=False))
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if reason.startswith(url):  # a sample too large
            return ShardInfo(0, 0, 0, reason)
        return ShardInfo(0, 0, 0, f"{url} could not be read as a tar ({reason})")
    return ShardInfo(samples, 0, 0, "" if samples else _no_audio(url))
