"""Which folders a report may replace: never one holding a user's files or the evaluated data.

A staged report (:mod:`escx.evaluation.staging`) replaces its folder whole, deleting what was in
it. :func:`check_report_target` therefore accepts only a new folder, an empty one, or one holding
nothing but what escx writes into a report (an earlier report, or the debris of one), and refuses
report folders that are, hold or lie inside the data being evaluated.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# What escx writes into a report folder: files, and folders of one file type.
REPORT_FILES = frozenset(
    {
        "results.csv",
        "results.json",
        "results.md",
        "report.html",
        "quality_vs_bitrate.png",
        "codebook_usage.png",
    }
)
REPORT_FOLDERS = {"audio": ".wav", "spectrograms": ".png"}
# Entries looked at before a folder counts as too large to be an escx report (a report holds a
# few files per listened clip and bitrate); bounds the time spent checking a wrong -o.
MAX_REPORT_ENTRIES = 100_000

# atomic_path's temporaries (.<name>.<pid>-<host>.<random>.tmp<suffix>), left by a killed writer
_TEMPORARY = re.compile(r"^\..+\.\d+-[A-Za-z0-9_-]+\.[^.]+\.tmp(\.[a-z]+)?$")


class ReportFolderError(ValueError):
    """``-o`` names a folder that a report must not replace; the message says why."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _foreign_entry(folder: Path) -> str | None:
    """The first entry of ``folder`` that escx does not write into a report, else None."""
    seen = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            seen += 1
            if seen > MAX_REPORT_ENTRIES:
                return f"more than {MAX_REPORT_ENTRIES:,} entries"
            if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
                continue  # a temporary file of a killed escx writer
            if entry.name in REPORT_FILES and entry.is_file(follow_symlinks=False):
                continue
            suffix = REPORT_FOLDERS.get(entry.name)
            if suffix is None or not entry.is_dir(follow_symlinks=False):
                return entry.name
            with os.scandir(entry.path) as inner:
                for item in inner:
                    seen += 1
                    if seen > MAX_REPORT_ENTRIES:
                        return f"more than {MAX_REPORT_ENTRIES:,} entries"
                    ours = item.name.endswith(suffix) or _TEMPORARY.match(item.name)
                    if not (ours and item.is_file(follow_symlinks=False)):
                        return f"{entry.name}/{item.name}"
    return None


def check_report_target(out: str | os.PathLike, data: str | os.PathLike | None = None) -> Path:
    """Check that a report may be written to ``out`` (replacing it), before any work starts.

    Refused: a parent folder that does not exist; ``out`` that is a file; a non-empty ``out``
    holding anything escx does not write into a report (so replacing it never deletes a user's
    files); ``out`` equal to ``data`` or inside it where the next evaluation of ``data`` would
    count the report's audio as data (audio in hidden folders is not scanned); ``data`` inside
    ``out`` (replacing ``out`` would delete it).

    Args:
        out: the report folder.
        data: the audio evaluated (a folder or a file), or None.

    Returns:
        ``out`` with symbolic links resolved: the folder that will be replaced.

    Raises:
        ReportFolderError: one of the above, in one line saying what to do.
    """
    given = Path(out)
    if not given.parent.is_dir():
        problem = "is not a directory" if given.parent.exists() else "does not exist"
        raise ReportFolderError(f"cannot create {given}: {given.parent} {problem}")
    if given.exists() and not given.is_dir():
        raise ReportFolderError(f"-o {given} is a file; give a folder for the report")
    target = given.resolve()
    if data is not None:
        source = Path(data).resolve()
        if target == source:
            raise ReportFolderError(
                f"-o {given} is the --data folder: the report's audio would become data; "
                "write the report elsewhere"
            )
        if source.is_dir() and _inside(target, source):
            hidden = any(p.startswith(".") for p in target.relative_to(source).parts)
            if not hidden:
                raise ReportFolderError(
                    f"-o {given} lies inside --data {data}: the next evaluation would count the "
                    "report's audio as data; write the report outside it"
                )
        if _inside(source, target):
            raise ReportFolderError(
                f"--data {data} lies inside -o {given}, which the report replaces; "
                "write the report elsewhere"
            )
    if target.is_dir():
        try:
            foreign = _foreign_entry(target)
        except OSError as error:
            raise ReportFolderError(f"cannot read -o {given}: {error.strerror}") from None
        if foreign is not None:
            raise ReportFolderError(
                f"-o {given} holds {foreign}, which escx did not write, and a new report replaces "
                "the whole folder; choose a new or empty folder, or one holding only a report"
            )
    return target
