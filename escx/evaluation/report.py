"""Write evaluation rows as results.csv, results.json, results.md and PNG plots.

Every file is written atomically (a temporary file renamed over the target), so a reader never
sees half a file and a symbolic link at a target is replaced, not written through. A whole report
folder appears at once when written through :func:`escx.evaluation.staging.staged_report`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from escx.evaluation.listening import Listening

from escx.atomic import atomic_path

# (key, Markdown header, format) of the table columns, in order.
COLUMNS: list[tuple[str, str, str]] = [
    ("kbps", "kbps", "{:g}"),
    ("kbps_measured", "measured kbps", "{:.2f}"),
    ("pesq", "PESQ-wb ↑", "{:.3f}"),
    ("stoi", "STOI ↑", "{:.3f}"),
    ("estoi", "ESTOI ↑", "{:.3f}"),
    ("sisdr", "SI-SDR (dB) ↑", "{:.2f}"),
    ("mel_distance", "mel dist. ↓", "{:.3f}"),
    ("dnsmos_sig", "DNSMOS SIG ↑", "{:.2f}"),
    ("dnsmos_bak", "DNSMOS BAK ↑", "{:.2f}"),
    ("dnsmos_ovrl", "DNSMOS OVRL ↑", "{:.2f}"),
    ("visqol", "ViSQOL ↑", "{:.2f}"),
    ("speaker_sim", "speaker sim. ↑", "{:.3f}"),
    ("bitrate_utilization", "bitrate util. ↑", "{:.1%}"),
    ("encode_rtf", "encode RTF", "{:.3f}"),
    ("decode_rtf", "decode RTF", "{:.3f}"),
    ("bandwidth", "audio band", "{}"),
    ("clips_scored", "clips", "{}"),
    ("dropped", "dropped (per metric)", "{}"),
]

# Text-valued row keys that are not label columns: shown in their own column or the caption.
NOT_LABELS = {"codec", "bandwidth", "library"}


def format_cell(value: Any, fmt: str) -> str:
    """A table cell: ``fmt`` applied to the value, or ``n/a`` for None and NaN.

    A ``{metric: count}`` dict (the ``dropped`` column) reads ``pesq 1, stoi 2``, or ``none``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if v) or "none"
    return fmt.format(value)


def table_columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(key, header, format) of the columns a table of ``rows`` shows, in order.

    Text-valued keys (such as an ablation's ``variant``) become leading columns, and so does
    ``codec`` when the rows hold more than one codec that their ``variant`` does not name; then
    every :data:`COLUMNS` entry that some row has.
    """
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if isinstance(v, str) and k not in keys]
    labels = [k for k in keys if k not in NOT_LABELS]
    # A study's rows name their codec in ``variant`` already: no second column saying the same.
    distinct = len({row.get("codec") for row in rows}) > 1
    if distinct and any(row.get("codec") != row.get("variant") for row in rows):
        labels.insert(0, "codec")
    columns = [(k, k, "{}") for k in labels]
    return columns + [c for c in COLUMNS if any(c[0] in row for row in rows)]


def markdown_table(rows: Sequence[dict[str, Any]], caption: str | None = None) -> str:
    """A Markdown table with one line per bitrate, followed by an optional caption line."""
    columns = table_columns(rows)
    lines = [
        "| " + " | ".join(header for _, header, _ in columns) + " |",
        "|" + "|".join("---:" for _ in columns) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(k), f) for k, _, f in columns) + " |")
    if caption:
        lines += ["", f"*{caption}*"]
    return "\n".join(lines) + "\n"


def _json_safe(value: Any) -> Any:
    """NaN and infinities -> None (JSON has no NaN); tensors and numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row for the CSV: ``dropped`` spread into ``dropped_<metric>`` columns."""
    dropped = row.get("dropped")
    if not isinstance(dropped, dict):
        return row
    return {**row, **{f"dropped_{k}": v for k, v in dropped.items()}}


def _scalar_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, list | dict)]
    return keys


def atomic_write(path: Path, write: Any, mode: str = "w") -> None:
    """Call ``write(file)`` on a temporary file that then replaces ``path`` (text mode writes
    UTF-8 with the caller's line endings)."""
    # csv writes its own line endings
    text = {"newline": "", "encoding": "utf-8"} if "b" not in mode else {}
    with atomic_path(path) as tmp, open(tmp, mode, **text) as file:
        write(file)


def write_report(
    rows: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    title: str,
    caption: str | None = None,
    plots: bool = True,
    listening: Listening | None = None,
    page: bool = True,
) -> dict[str, Path]:
    """Write an evaluation report.

    Args:
        rows: one dict per bitrate, as :func:`escx.evaluation.evaluate_codec` returns (any extra
            scalar keys become CSV columns; ``dropped`` becomes ``dropped_<metric>`` columns;
            other list and dict values, such as per-codebook utilisation, go to the JSON only).
        out_dir: folder to write into (created if missing, its parent must exist).
        title: heading of results.md and the plots (e.g. the model name).
        caption: line under the table naming the model and the data.
        plots: also draw quality_vs_bitrate.png and codebook_usage.png.
        listening: the players' audio and spectrograms recorded during the evaluation (already
            in ``out_dir``), shown on the page.
        page: also write report.html (table, plots, players), which opens from disk.

    Returns:
        Paths of the written files by kind: ``csv``, ``json``, ``md``, the plots and ``html``.
    """
    out = Path(out_dir)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot create {out}: folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"cannot write a report into {out}: it is a file")
    out.mkdir(exist_ok=True)
    rows = [dict(row) for row in rows]
    paths = {"csv": out / "results.csv", "json": out / "results.json", "md": out / "results.md"}
    flat = [_flat(row) for row in rows]
    keys = _scalar_columns(flat)

    def write_csv(file: Any) -> None:
        writer = csv.DictWriter(file, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(flat)

    atomic_write(paths["csv"], write_csv)
    document = {"title": title, "caption": caption, "rows": _json_safe(rows)}
    atomic_write(paths["json"], lambda f: json.dump(document, f, indent=2, allow_nan=False))
    atomic_write(paths["md"], lambda f: f.write(f"# {title}\n\n" + markdown_table(rows, caption)))
    if plots and rows:
        from escx.evaluation.plots import plot_codebook_usage, plot_quality

        paths["quality_plot"] = plot_quality(rows, out / "quality_vs_bitrate.png", title)
        usage = plot_codebook_usage(rows, out / "codebook_usage.png", title)
        if usage is not None:
            paths["usage_plot"] = usage
    if page:
        from escx.evaluation.page import write_page

        images = [paths[k] for k in ("quality_plot", "usage_plot") if k in paths]
        paths["html"] = write_page(out, title, rows, caption, images, listening)
    return paths
