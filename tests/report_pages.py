"""Reads a report.html back with html.parser: its tables, players and images, for the tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path


@dataclass
class Table:
    """One <table>: its class, header cells and body rows (cells as text, players, images)."""

    cls: str
    header: list[str] = field(default_factory=list)
    rows: list[list[dict]] = field(default_factory=list)


class ReportParser(HTMLParser):
    """Collects tables (cell text, <audio> and <img> attributes per cell) and every <img>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[Table] = []
        self.images: list[dict] = []
        self.audios: list[dict] = []
        self._cell: dict | None = None
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self.tables.append(Table(attributes.get("class", "")))
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self.tables and not self._in_head:
            self.tables[-1].rows.append([])
        elif tag in ("td", "th"):
            self._cell = {"text": "", "audio": [], "img": []}
        elif tag == "audio":
            self.audios.append(attributes)
            if self._cell is not None:
                self._cell["audio"].append(attributes)
        elif tag == "img":
            self.images.append(attributes)
            if self._cell is not None:
                self._cell["img"].append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            if self._in_head:
                self.tables[-1].header.append(self._cell["text"].strip())
            else:
                self.tables[-1].rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data


def parse_report(path: Path) -> ReportParser:
    """Parse report.html; also checks that every referenced file exists beside it."""
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    for reference in [*parser.images, *parser.audios]:
        assert (path.parent / reference["src"]).is_file(), reference["src"]
    return parser
