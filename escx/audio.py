"""Audio file I/O: reading with mono down-mix and resampling, atomic writing, file discovery.

Everything is decoded with ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis, MP3) and resampled
with ``scipy.signal.resample_poly`` using the rational factor ``target/g : sr/g`` with
``g = gcd(sr, target)``; escx does not depend on torchaudio. Codecs
work on 16 kHz mono speech (docs/esc.md §2), so every reader returns a mono float32 tensor at the
requested rate, plus an :class:`AudioInfo` describing the original file so callers can say what was
converted.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from escx.atomic import atomic_path
from escx.files.scan import ScanError, find_files

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

# Container format and sample format written for each extension. Integer PCM keeps files small and
# exact to re-read; OGG and MP3 only exist as lossy codecs.
_WRITE_FORMATS = {
    ".wav": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}

AudioSource = str | os.PathLike | bytes | BinaryIO


class AudioError(ValueError):
    """A file or buffer that cannot be used as audio; the message is one line saying what to do."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file held before conversion.

    Attributes:
        sample_rate: original sample rate in Hz.
        channels: original channel count.
        frames: original length in samples per channel.
        target_sample_rate: the rate the caller asked for (what :func:`read_audio` returns).
        format: libsndfile container name, e.g. ``"FLAC"``.
        name: the file name used in messages.
    """

    sample_rate: int
    channels: int
    frames: int
    target_sample_rate: int
    format: str = ""
    name: str = "<audio>"

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate

    @property
    def resampled(self) -> bool:
        """Whether reading converts the sample rate."""
        return self.sample_rate != self.target_sample_rate

    @property
    def downmixed(self) -> bool:
        """Whether reading averages several channels into one."""
        return self.channels > 1

    @property
    def target_frames(self) -> int:
        """Length in samples after resampling (``resample_poly`` rounds up)."""
        up, down = _ratio(self.sample_rate, self.target_sample_rate)
        return math.ceil(self.frames * up / down)

    def notice(self) -> str | None:
        """One line describing the conversion done on reading, or None when there was none."""
        if not (self.resampled or self.downmixed):
            return None
        done = []
        if self.resampled:
            done.append(f"resampled {self.sample_rate} Hz -> {self.target_sample_rate} Hz")
        if self.downmixed:
            done.append(f"down-mixed {self.channels} channels to mono")
        return f"{self.name}: {', '.join(done)}"


def _ratio(sr: int, target_sr: int) -> tuple[int, int]:
    g = math.gcd(sr, target_sr)
    return target_sr // g, sr // g


def _name(source: AudioSource) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return getattr(source, "name", None) or "<audio bytes>"


def _open(source: AudioSource) -> str | BinaryIO:
    """Check a path exists and is a file; wrap bytes in a buffer."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source))
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"audio file not found: {path}")
        if path.is_dir():
            raise AudioError(
                f"{path} is a directory; expected an audio file ({', '.join(AUDIO_EXTENSIONS)})"
            )
        if path.stat().st_size == 0:
            raise AudioError(f"{path} is empty (0 bytes); remove it or re-export it")
        return str(path)
    source.seek(0)
    return source


def _sf_error(name: str, err: Exception) -> AudioError:
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return AudioError(
        f"{name} is not a readable audio file ({reason}); expected {'/'.join(AUDIO_EXTENSIONS)}"
    )


def audio_info(source: AudioSource, target_sr: int = 16000) -> AudioInfo:
    """Read only the header of an audio file (fast) and check that it holds samples.

    Args:
        source: a path, the encoded bytes of a file, or a seekable binary file object.
        target_sr: the rate the file will be read at, recorded in the result.

    Raises:
        AudioError: missing path, a directory, not an audio file, or zero-length audio.
    """
    name = _name(source)
    handle = _open(source)
    try:
        info = sf.info(handle)
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as err:
        raise _sf_error(name, err) from None
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(f"{name} is empty (zero-length audio); remove it or re-export it")
    _check_tail(_open(source), name)
    return AudioInfo(info.samplerate, info.channels, info.frames, target_sr, info.format, name)


def resample(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with a polyphase FIR (no-op when the rates match).

    Args:
        audio: samples, shape (..., L).
        sr: current rate in Hz.
        target_sr: wanted rate in Hz.

    Returns:
        float32 array of shape (..., ceil(L * target_sr / sr)).
    """
    if sr == target_sr:
        return audio.astype(np.float32, copy=False)
    up, down = _ratio(sr, target_sr)
    return resample_poly(audio, up, down, axis=-1).astype(np.float32, copy=False)


# Samples beyond this are not audio scaled to full scale (+-1) but some other quantity; float
# files from processing may exceed 1 a little, so the bound is generous (+24 dBFS).
MAX_PEAK = 16.0


def _check_finite(audio: np.ndarray, name: str) -> None:
    """Raise AudioError for NaN or infinite samples, or samples far beyond full scale."""
    if not np.isfinite(audio).all():
        raise AudioError(f"{name} contains NaN or infinite samples; re-export the file")
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > MAX_PEAK:
        raise AudioError(
            f"{name} has samples up to {peak:.3g}, far beyond full scale (+-1): it is not scaled "
            "as audio; normalise it to [-1, 1] and try again"
        )


def _check_tail(handle: str | BinaryIO, name: str) -> None:
    """Decode the last samples: a file cut short (e.g. a FLAC whose header promises more frames
    than it holds) fails here, once, instead of at every read during training."""
    try:
        with sf.SoundFile(handle) as file:
            file.seek(max(0, file.frames - 64))
            file.read(64, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, EOFError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AudioError(
            f"{name} is truncated or damaged: its last samples cannot be decoded ({reason}); "
            "re-copy or re-export it"
        ) from None


def decode_array(
    audio: np.ndarray, sr: int, target_sr: int = 16000, name: str = "<array>"
) -> torch.Tensor:
    """Down-mix and resample already decoded samples.

    Args:
        audio: shape (L,) or (L, C) frames-first, as soundfile and Hugging Face datasets give it.
        sr: its sample rate in Hz.
        target_sr: rate of the result.
        name: used in error messages.

    Returns:
        float32 tensor of shape (L',) at ``target_sr``.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if audio.ndim != 1:
        raise AudioError(f"{name}: expected samples of shape (L,) or (L, C), got {audio.shape}")
    if audio.size == 0:
        raise AudioError(f"{name} is empty (zero-length audio); remove it or re-export it")
    _check_finite(audio, name)
    return torch.from_numpy(np.ascontiguousarray(resample(audio, sr, target_sr)))


def read_audio(
    source: AudioSource,
    target_sr: int = 16000,
    offset: int = 0,
    num_frames: int | None = None,
) -> tuple[torch.Tensor, AudioInfo]:
    """Read audio as mono float32 at ``target_sr``, optionally only a window of it.

    Multichannel audio is averaged to mono; any rate is resampled. ``offset`` and ``num_frames``
    count samples at ``target_sr``. A window only decodes the source samples it needs (plus the
    resampling filter's reach), and gives the same samples as slicing the whole converted file.

    Args:
        source: a path, the encoded bytes of a file, or a seekable binary file object.
        target_sr: rate of the returned samples in Hz.
        offset: first sample of the window at ``target_sr``.
        num_frames: window length at ``target_sr``; None reads to the end. The window is shorter
            when the file ends first.

    Returns:
        ``(audio, info)``: audio of shape (L,), float32; info on the original file.

    Raises:
        AudioError: missing path, directory, not audio, zero-length, NaN or infinite samples.
    """
    info = audio_info(source, target_sr)
    handle = _open(source)
    up, down = _ratio(info.sample_rate, target_sr)
    if offset < 0 or (num_frames is not None and num_frames < 0):
        raise AudioError(f"{info.name}: offset and num_frames must be >= 0")
    end = info.target_frames if num_frames is None else min(offset + num_frames, info.target_frames)
    if end <= offset:
        return torch.zeros(0), info
    if offset == 0 and end == info.target_frames:
        start_src, stop_src, first = 0, info.frames, 0
    elif up == down:
        start_src, stop_src, first = offset, max(offset, end), 0
    else:
        # Start on a multiple of `down` so the chunk's output grid coincides with the whole file's
        # (sample n of the output sits at source time n * down / up), and read `reach` extra source
        # samples each side so the FIR sees the true neighbours of the window's edges.
        reach = math.ceil(10 * max(up, down) / up) + 1
        start_src = max(0, (offset * down // up - reach) // down * down)
        stop_src = min(info.frames, math.ceil(end * down / up) + reach)
        first = offset - start_src * up // down
    try:
        data, _ = sf.read(handle, start=start_src, stop=stop_src, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as err:
        raise _sf_error(info.name, err) from None
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    _check_finite(mono, info.name)
    out = resample(mono, info.sample_rate, target_sr)[first : first + end - offset]
    return torch.from_numpy(np.ascontiguousarray(out)), info


def write_audio(
    path: str | os.PathLike, audio: torch.Tensor | np.ndarray, sr: int, subtype: str | None = None
) -> Path:
    """Write audio atomically: to a temporary file beside ``path``, then rename it into place.

    Samples are clipped to [-1, 1] (integer PCM would otherwise wrap around). The format follows
    the extension: WAV and FLAC as 16-bit PCM, OGG as Vorbis, MP3 as MPEG layer III. If anything
    fails, no file (neither ``path`` nor a temporary) is left behind.

    Args:
        path: destination, ending in one of :data:`AUDIO_EXTENSIONS`.
        audio: shape (L,) mono or (C, L) channels-first, float.
        sr: sample rate in Hz.
        subtype: libsndfile subtype overriding the default for the extension (e.g. ``"FLOAT"``).

    Returns:
        The destination path.

    Raises:
        AudioError: unknown extension, missing folder, empty or non-finite audio, bad shape.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _WRITE_FORMATS:
        raise AudioError(f"cannot write {path}: use one of {', '.join(AUDIO_EXTENSIONS)}")
    if not path.parent.is_dir():
        raise AudioError(f"cannot write {path}: folder {path.parent} does not exist")
    if path.is_dir():
        raise AudioError(f"cannot write {path}: it is a directory")
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise AudioError(f"cannot write {path}: sample rate must be a positive int, got {sr!r}")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().to("cpu", torch.float32).numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim not in (1, 2) or audio.size == 0:
        raise AudioError(
            f"cannot write {path}: expected non-empty audio of shape (L,) or (C, L), "
            f"got {audio.shape}"
        )
    _check_finite(audio, f"audio for {path}")
    frames_first = np.clip(audio if audio.ndim == 1 else audio.T, -1.0, 1.0)
    fmt, default_subtype = _WRITE_FORMATS[suffix]
    try:
        with atomic_path(path, suffix) as tmp:
            sf.write(tmp, frames_first, sr, format=fmt, subtype=subtype or default_subtype)
    except BaseException as err:
        if isinstance(err, sf.LibsndfileError | RuntimeError | ValueError | TypeError):
            raise AudioError(f"cannot write {path}: {str(err).splitlines()[0]}") from None
        raise
    return path


def is_audio_file(path: str | os.PathLike) -> bool:
    """Whether the name has an audio extension and is not hidden (e.g. ``._x.wav``, temp files)."""
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in AUDIO_EXTENSIONS


def find_audio_files(root: str | os.PathLike) -> list[Path]:
    """All audio files under ``root``, recursively, sorted; hidden files and folders are skipped.

    Symbolic links are followed, but each real folder is entered once and each file listed once
    (:func:`escx.files.scan.find_files`), so link loops neither hang the scan nor repeat files;
    entries that are not regular files (FIFOs, dangling links) are skipped with a warning.

    Args:
        root: a folder, or a single audio file (returned alone).

    Raises:
        AudioError: ``root`` does not exist, is a file that is not audio, or is nested absurdly
            deep.
    """
    root = Path(root)
    if not root.exists():
        raise AudioError(f"audio folder not found: {root}")
    if root.is_file():
        if is_audio_file(root):
            return [root]
        raise AudioError(f"{root} is not an audio folder or file ({', '.join(AUDIO_EXTENSIONS)})")
    if not root.is_dir():  # a FIFO or device: reading it could block forever
        raise AudioError(f"{root} is neither a folder nor a regular audio file")
    try:
        return find_files(root, is_audio_file)
    except ScanError as error:
        raise AudioError(str(error)) from None
