"""A clone of the repository stands alone: no file points at notes or data outside it.

Citations of ESC facts go to ``docs/esc.md §N``, and every such section must exist. Tests may
still read the optional development speech folder beside the checkout (they skip without it),
so the parent-folder path is allowed under ``tests/`` only.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()

# Private notes that lived outside the repository, by name (upper case: docs/esc.md is fine).
OUTSIDE_NOTES = re.compile(r"\b(?:ESC|ENV|DESIGN)\.md\b")
PARENT_FOLDER = re.compile(r"\.\./shared\b")
SECTION_HEADING = re.compile(r"^#{2,4} §(\d+(?:\.\d+)*)\s", re.M)
SECTION_REF = re.compile(r"§(\d+(?:\.\d+)*)")
ESC_DOC = "docs/esc.md"


def _tracked_text_files() -> dict[str, str]:
    """Path -> text of every tracked file that is text (binary fixtures are skipped)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = {}
    for name in listing.decode().split("\0"):
        path = REPO / name
        if not name or name == THIS or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        files[name] = data.decode("utf-8", errors="replace")
    return files


@pytest.fixture(scope="module")
def tracked() -> dict[str, str]:
    return _tracked_text_files()


def test_no_file_points_outside_the_repository(tracked):
    offences = []
    for name, text in tracked.items():
        for number, line in enumerate(text.splitlines(), 1):
            outside = OUTSIDE_NOTES.search(line)
            parent = PARENT_FOLDER.search(line) and not name.startswith("tests/")
            if outside or parent:
                offences.append(f"{name}:{number}: {line.strip()[:90]}")
    assert not offences, "references to files outside the repository:\n" + "\n".join(offences)


def test_every_docs_esc_section_cited_exists(tracked):
    sections = set(SECTION_HEADING.findall(tracked[ESC_DOC]))
    assert {"1", "2", "13.4", "17"} <= sections  # the headings parse at all
    bad = []
    for name, text in tracked.items():
        for number, line in enumerate(text.splitlines(), 1):
            refs = SECTION_REF.findall(line)
            if not refs:
                continue
            if name != ESC_DOC and ESC_DOC not in line:
                bad.append(f"{name}:{number}: § without {ESC_DOC} on the same line")
            missing = [ref for ref in refs if ref not in sections]
            bad += [f"{name}:{number}: {ESC_DOC} has no §{ref}" for ref in missing]
    assert not bad, "\n".join(bad)


def test_readme_links_docs_esc():
    assert f"]({ESC_DOC})" in (REPO / "README.md").read_text()
