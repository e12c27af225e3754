"""Audio and spectrograms kept for the listening report: a grid of clips by columns.

A :class:`Listening` collects, for the first ``clips`` clips, a WAV file and a spectrogram image
per grid cell, under ``audio/`` and ``spectrograms/`` of the report folder. A grid is one table of
the page: one row per clip, one column per version of it ("original", each bitrate, or each
variant of an ablation). :meth:`Listening.bitrates` and :meth:`Listening.variant` return the
callbacks that :func:`escx.evaluation.evaluate_codec` calls with every clip it decodes,
:meth:`Listening.labelled` the one for :func:`escx.evaluation.evaluate_baselines`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from escx.audio import write_audio
from escx.evaluation.spectrogram import save_spectrogram

ORIGINAL = "original"


@dataclass
class Cell:
    """One player: paths relative to the report folder, and the clip's duration in seconds."""

    audio: str
    image: str
    seconds: float


@dataclass
class ClipRow:
    """One clip of a grid: its name and a cell per column."""

    name: str
    seconds: float
    cells: dict[str, Cell] = field(default_factory=dict)


@dataclass
class Grid:
    """One listening table: its title, column order and clip rows by clip index."""

    title: str
    columns: list[str] = field(default_factory=lambda: [ORIGINAL])
    rows: dict[int, ClipRow] = field(default_factory=dict)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "x"


class Listening:
    """Writes players' audio and spectrograms for the first ``clips`` clips of an evaluation.

    Args:
        out_dir: the report folder (created if missing; its parent must exist).
        sample_rate: rate of the audio it receives.
        clips: how many clips get players (0: none).
    """

    def __init__(self, out_dir: str | Path, sample_rate: int, clips: int = 4) -> None:
        self.out_dir = Path(out_dir)
        self.sample_rate = sample_rate
        self.clips = clips
        self.grids: dict[str, Grid] = {}
        self._originals: dict[int, Cell] = {}

    def wants(self, index: int) -> bool:
        """Whether clip ``index`` (0-based, evaluation order) gets players."""
        return index < self.clips

    def _write(self, audio: Tensor, stem: str, sample_rate: int | None = None) -> Cell:
        rate = sample_rate or self.sample_rate
        for folder in ("audio", "spectrograms"):
            (self.out_dir / folder).mkdir(parents=True, exist_ok=True)
        # A diverged model's NaNs must not stop the report; they play as silence.
        audio = torch.nan_to_num(audio.detach().float().cpu(), nan=0.0, posinf=1.0, neginf=-1.0)
        write_audio(self.out_dir / "audio" / f"{stem}.wav", audio, rate)
        save_spectrogram(audio, self.out_dir / "spectrograms" / f"{stem}.png")
        seconds = audio.numel() / rate
        return Cell(f"audio/{stem}.wav", f"spectrograms/{stem}.png", seconds)

    def record(
        self,
        grid: str,
        column: str,
        index: int,
        name: str,
        audio: Tensor,
        sample_rate: int | None = None,
    ) -> None:
        """Add clip ``index``'s version ``column`` (``"original"`` or any label) to ``grid``.

        The original of a clip is written once and shared by every grid. ``sample_rate`` is the
        audio's rate when it differs from the recorder's.
        """
        if not self.wants(index):
            return
        table = self.grids.setdefault(grid, Grid(grid))
        if column not in table.columns:
            table.columns.append(column)
        if column == ORIGINAL:
            if index not in self._originals:
                stem = f"clip{index + 1:02d}-{ORIGINAL}"
                self._originals[index] = self._write(audio, stem, sample_rate)
            cell = self._originals[index]
        else:
            stem = f"clip{index + 1:02d}-{_slug(grid)}-{_slug(column)}"
            cell = self._write(audio, stem, sample_rate)
        row = table.rows.setdefault(index, ClipRow(Path(name).name, cell.seconds))
        row.cells[column] = cell

    def bitrates(self, kbps: Callable[[int], float], grid: str = "clips") -> Callable:
        """Callback for ``evaluate_codec``: one grid, the original then one column per bitrate."""

        def listen(index: int, name: str, streams: int | None, audio: Tensor) -> None:
            label = ORIGINAL if streams is None else f"{kbps(streams):g} kbps"
            self.record(grid, label, index, _name(name, index), audio)

        return listen

    def labelled(self, grid: str, sample_rate: int | None = None) -> Callable:
        """Callback for ``evaluate_baselines``: one grid, the original then one column per label
        it receives (``opus 6 kbps``...), of audio at ``sample_rate`` (default: the recorder's).
        """

        def listen(index: int, name: str, label: str | None, audio: Tensor) -> None:
            column = ORIGINAL if label is None else label
            self.record(grid, column, index, _name(name, index), audio, sample_rate)

        return listen

    def variant(
        self, variant: str, kbps: Callable[[int], float], streams: Sequence[int]
    ) -> Callable:
        """Callback for ``evaluate_codec`` of one variant of a comparison: a grid per bitrate
        among ``streams`` (titled by its kbps), the original then one column per variant."""

        def listen(index: int, name: str, count: int | None, audio: Tensor) -> None:
            if count is None:
                for s in streams:
                    self.record(f"{kbps(s):g} kbps", ORIGINAL, index, _name(name, index), audio)
            elif count in streams:
                self.record(f"{kbps(count):g} kbps", variant, index, _name(name, index), audio)

        return listen


def _name(name: str, index: int) -> str:
    return name if name != "<tensor>" else f"clip {index + 1}"
