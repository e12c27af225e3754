"""report.html: the evaluation as a page that opens from disk, with players to listen.

The page is one HTML file beside its images and audio (relative links, inline CSS, no script, no
server): the summary table of every metric, the plots, and one listening table per grid (one row
per clip; original and each bitrate or variant side by side, each a player over its spectrogram).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from escx.evaluation.listening import Listening
from escx.evaluation.report import COLUMNS, atomic_write, format_cell, table_columns
from escx.metrics.models import INSTALL_HINT, MODEL_COLUMNS

# The players' tables scroll sideways inside their own box when a window is too narrow for them,
# with the clip names kept in view, instead of being cut off at the window's edge; clip names
# wrap at word boundaries (or anywhere only when a single word is longer than the column).
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 110em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; } h3 { font-size: 1em; }
p.caption, p.note { color: #555; font-size: 0.9em; max-width: 70em; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; }
div.scroll { overflow-x: auto; max-width: 100%; }
table.summary td { text-align: right; font-variant-numeric: tabular-nums; }
table.summary th { background: #f2f2f2; }
table.listen td { vertical-align: top; width: 11em; min-width: 11em; }
table.listen th.clip { text-align: left; font-weight: normal; width: 8em; min-width: 8em;
  overflow-wrap: anywhere; position: sticky; left: 0; background: #fff; z-index: 1; }
table.listen thead th { white-space: nowrap; }
audio { width: 100%; min-width: 10em; display: block; }
td img.spectrogram { width: 100%; height: 8em; display: block; margin-top: 0.25em; }
img.plot { max-width: 100%; border: 1px solid #eee; }
"""


def _summary(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns = table_columns(rows)
    head = "".join(f"<th>{escape(header)}</th>" for _, header, _ in columns)
    body = [
        "<tr>" + "".join(f"<td>{escape(format_cell(row.get(k), f))}</td>" for k, _, f in columns)
        for row in rows
    ]
    return [
        '<div class="scroll"><table class="summary">',
        f"<thead><tr>{head}</tr></thead>",
        "<tbody>",
        *[line + "</tr>" for line in body],
        "</tbody></table></div>",
    ]


def _text_table(rows: Sequence[dict[str, str]]) -> list[str]:
    keys = list(rows[0]) if rows else []
    head = "".join(f"<th>{escape(key)}</th>" for key in keys)
    body = ["<tr>" + "".join(f"<td>{escape(str(row.get(k, '')))}</td>" for k in keys) + "</tr>"
            for row in rows]  # fmt: skip
    return ['<div class="scroll"><table>', f"<thead><tr>{head}</tr></thead>", "<tbody>", *body,
            "</tbody></table></div>"]  # fmt: skip


def _listening(listening: Listening) -> list[str]:
    lines = []
    for grid in listening.grids.values():
        if len(listening.grids) > 1:
            lines.append(f"<h3>{escape(grid.title)}</h3>")
        head = "".join(f"<th>{escape(c)}</th>" for c in grid.columns)
        lines += [
            '<div class="scroll"><table class="listen">',
            f'<thead><tr><th class="clip">clip</th>{head}</tr></thead>',
            "<tbody>",
        ]
        for row in grid.rows.values():
            cells = []
            for column in grid.columns:
                cell = row.cells.get(column)
                if cell is None:
                    cells.append("<td>n/a</td>")
                    continue
                label = escape(f"{row.name}, {column}")
                cells.append(
                    f'<td><audio controls preload="metadata" src="{escape(cell.audio)}" '
                    f'data-seconds="{cell.seconds:.6f}"></audio>'
                    f'<img class="spectrogram" src="{escape(cell.image)}" '
                    f'alt="spectrogram: {label}"></td>'
                )
            name = f"{escape(row.name)}<br>{row.seconds:.2f} s"
            lines.append(f'<tr><th class="clip">{name}</th>{"".join(cells)}</tr>')
        lines.append("</tbody></table></div>")
    return lines


def write_page(
    out_dir: str | os.PathLike,
    title: str,
    rows: Sequence[dict[str, Any]],
    caption: str | None = None,
    images: Sequence[Path] = (),
    listening: Listening | None = None,
    tables: Sequence[tuple[str, Sequence[dict[str, str]]]] = (),
) -> Path:
    """Write ``out_dir/report.html`` (atomically); ``images`` and the listening files must lie in
    ``out_dir``.

    Args:
        out_dir: the report folder.
        title: page heading.
        rows: the summary table's rows (one per bitrate, or per variant and bitrate).
        caption: a line under the heading naming the model and the data.
        images: plots to show, in order.
        listening: players recorded during the evaluation; None for a page without them.
        tables: ``(heading, rows)`` sections shown above the summary, each a table of text
            cells whose columns are the first row's keys (a study's headline).

    Returns:
        The path of report.html.
    """
    out = Path(out_dir)
    missing = [
        header.rstrip(" ↑")
        for key, header, _ in COLUMNS
        if key in MODEL_COLUMNS and not any(key in row for row in rows)
    ]
    lines = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if caption:
        lines.append(f'<p class="caption">{escape(caption)}</p>')
    for heading, table in tables:
        lines += [f"<h2>{escape(heading)}</h2>", *_text_table(table)]
    lines += ["<h2>Summary</h2>", *_summary(rows)]
    if missing:
        lines.append(
            f'<p class="note">Not computed: {escape(", ".join(missing))} (the '
            f"<code>eval</code> extra adds them: <code>{escape(INSTALL_HINT)}</code>).</p>"
        )
    if listening is not None and listening.grids:
        shown = max(len(g.rows) for g in listening.grids.values())
        total = rows[0].get("files", shown) if rows else shown
        lines += [
            "<h2>Listen</h2>",
            f'<p class="note">Players for {shown} of {total} clips (all clips are in the '
            "metrics). Spectrograms share one dB scale (magma: dark is quiet).</p>",
            *_listening(listening),
        ]
    if images:
        lines.append("<h2>Plots</h2>")
        for image in images:
            name = Path(image).name
            lines.append(f'<p><img class="plot" src="{escape(name)}" alt="{escape(name)}"></p>')
    lines.append("</body></html>")
    path = out / "report.html"
    atomic_write(path, lambda file: file.write("\n".join(lines) + "\n"))
    return path
