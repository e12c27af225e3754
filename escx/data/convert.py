"""Building a corpus folder: choosing a train/val split and converting files to 16 kHz mono FLAC.

Used by :mod:`escx.data.prepare`. A split keeps speakers apart when the layout shows them: existing
``train/`` and ``val/`` sub-folders win; otherwise files are grouped by their first differing
sub-folder (LibriSpeech ``speaker/chapter/…``, VCTK ``p225/…``) or, in a flat folder, by the name
prefix before ``_`` (``p225_001.wav``) or ``-`` (``19-198-0000.flac``); whole groups go to
validation. With no obvious groups it is a seeded 90/10 file split.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from escx.audio import AudioError, audio_info, find_audio_files, read_audio, write_audio
from escx.data.hf import value_to_item

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
VAL_DIR_NAMES = ("val", "valid", "validation", "dev")


@dataclass
class SplitPlan:
    """Files for each split, each with the folder its output path is relative to."""

    train: list[tuple[Path, Path]]  # (file, base folder)
    val: list[tuple[Path, Path]]
    how: str  # a few words for the log


def _group_keys(root: Path, files: list[Path]) -> tuple[list[str], str] | None:
    """Speaker-like group of each file, or None when the layout shows none."""
    dirs = [f.relative_to(root).parts[:-1] for f in files]
    depth = 0
    while all(len(d) > depth for d in dirs) and len({d[depth] for d in dirs}) == 1:
        depth += 1  # skip folders every file shares (e.g. LibriSpeech/train-clean-100/)
    if all(len(d) > depth for d in dirs):
        keys = [d[depth] for d in dirs]
        if 2 <= len(set(keys)) < len(files):
            return keys, "by sub-folder"
    for sep in ("_", "-"):
        if all(sep in f.stem.strip(sep) for f in files):
            keys = [f.stem.strip(sep).split(sep)[0] for f in files]
            if 2 <= len(set(keys)) <= len(files) // 2:
                return keys, f"by speaker prefix (before '{sep}')"
    return None


def plan_split(root: Path, val_fraction: float = 0.1, seed: int = 53) -> SplitPlan:
    """Decide which files of ``root`` go to train and which to val (see the module docstring).

    Raises:
        AudioError: ``root`` has fewer than 2 audio files.
    """
    val_dirs = [root / n for n in VAL_DIR_NAMES if (root / n).is_dir()]
    if (root / "train").is_dir() and val_dirs:
        train = [(f, root / "train") for f in find_audio_files(root / "train")]
        val = [(f, val_dirs[0]) for f in find_audio_files(val_dirs[0])]
        if train and val:
            return SplitPlan(train, val, f"from train/ and {val_dirs[0].name}/")
    files = find_audio_files(root)
    if len(files) < 2:
        raise AudioError(f"{root} has {len(files)} audio files; need at least 2 (train and val)")
    rng = random.Random(seed)
    grouped = _group_keys(root, files)
    if grouped is not None:
        keys, how = grouped
        groups: dict[str, list[Path]] = {}
        for key, f in zip(keys, files, strict=True):
            groups.setdefault(key, []).append(f)
        order = sorted(groups)
        rng.shuffle(order)
        target = max(1.0, val_fraction * len(files))
        val_keys: list[str] = []
        count = 0
        for key in order[:-1]:  # leave at least one group for training
            if count >= target:
                break
            if count + len(groups[key]) <= 1.5 * target:
                val_keys.append(key)
                count += len(groups[key])
        if not val_keys:
            val_keys = [min(order, key=lambda k: len(groups[k]))]
        chosen = set(val_keys)
        train = [(f, root) for k in sorted(groups) if k not in chosen for f in groups[k]]
        val = [(f, root) for k in sorted(chosen) for f in groups[k]]
        return SplitPlan(sorted(train), sorted(val), f"{how}, {len(chosen)} groups to val")
    shuffled = files[:]
    rng.shuffle(shuffled)
    n_val = min(len(files) - 1, max(1, round(val_fraction * len(files))))
    val = sorted((f, root) for f in shuffled[:n_val])
    train = sorted((f, root) for f in shuffled[n_val:])
    return SplitPlan(train, val, f"seeded {1 - val_fraction:.0%}/{val_fraction:.0%} file split")


@dataclass
class ConvertReport:
    """What a conversion did."""

    written: int = 0
    copied: int = 0
    resampled: int = 0
    downmixed: int = 0
    failures: list[str] = field(default_factory=list)


def _free_name(out_dir: Path, rel: Path) -> Path:
    dest = out_dir / rel.with_suffix(".flac")
    n = 2
    while dest.exists():
        dest = out_dir / rel.with_name(f"{rel.stem}-{n}.flac")
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    return dest


def convert_files(files: Iterable[tuple[Path, Path]], out_dir: Path) -> ConvertReport:
    """Write each file as 16 kHz mono 16-bit FLAC under ``out_dir``, keeping its relative path.

    Files that already are 16 kHz mono FLAC are copied byte for byte. Unreadable files are skipped
    and reported.
    """
    report = ConvertReport()
    for n, (file, base) in enumerate(files, start=1):
        try:
            info = audio_info(file, SAMPLE_RATE)
            dest = _free_name(out_dir, file.relative_to(base))
            if info.format == "FLAC" and not (info.resampled or info.downmixed):
                shutil.copyfile(file, dest)
                report.copied += 1
            else:
                audio, _ = read_audio(file, SAMPLE_RATE)
                write_audio(dest, audio, SAMPLE_RATE)
            report.resampled += info.resampled
            report.downmixed += info.downmixed
            report.written += 1
        except AudioError as err:
            report.failures.append(str(err))
        if n % 500 == 0:
            log.info("%s: %d files done", out_dir.name, n)
    return report


def convert_rows(rows: Iterable[dict], column: str, out_dir: Path, label: str) -> ConvertReport:
    """Write the audio of Hugging Face rows (``Audio(decode=False)`` values) as 16 kHz mono FLAC.

    Output names come from the row's original file name when it has one, else the row number.
    """
    report = ConvertReport()
    for i, row in enumerate(rows):
        value = row.get(column)
        original = value.get("path") if isinstance(value, dict) else None
        stem = Path(original).stem if original else f"{i:07d}"
        try:
            item = value_to_item(value, f"{label}[{i}]")
            info = item.info(SAMPLE_RATE)
            audio = item.read(SAMPLE_RATE)
            write_audio(_free_name(out_dir, Path(stem + ".flac")), audio, SAMPLE_RATE)
            report.written += 1
            report.resampled += info.resampled
            report.downmixed += info.downmixed
        except AudioError as err:
            report.failures.append(str(err))
        if (i + 1) % 500 == 0:
            log.info("%s: %d rows done", out_dir.name, i + 1)
    return report
