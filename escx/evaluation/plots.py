"""Report plots: quality vs bitrate, and codebook utilisation as a stream x group heatmap.

Drawn with matplotlib's object API (no pyplot state), so plotting works headless and in threads.
Rows of several codecs (a trained codec beside Opus and Codec2) are drawn as one line per codec.
Images are written atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from escx.atomic import atomic_path

# (row key, axis label) of the quality panels; a panel is drawn when any row has the key.
PANELS = [
    ("pesq", "PESQ-wb"),
    ("stoi", "STOI"),
    ("estoi", "ESTOI"),
    ("sisdr", "SI-SDR (dB)"),
    ("mel_distance", "mel distance"),
    ("dnsmos_ovrl", "DNSMOS OVRL"),
    ("visqol", "ViSQOL MOS-LQO"),
    ("speaker_sim", "speaker similarity"),
    ("bitrate_utilization", "bitrate utilisation"),
    ("encode_rtf", "real-time factor"),
]


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, dpi=110)
    return path


def plot_quality(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """One panel per metric against the nominal bitrate, one line per codec (the ``codec`` key);
    the speed panel has encode and decode."""
    panels = [p for p in PANELS if any(row.get(p[0]) is not None for row in rows)]
    cols = 3
    nrows = max(1, -(-len(panels) // cols))
    fig = Figure(figsize=(4 * cols, 3.2 * nrows), layout="constrained")
    codecs = list(dict.fromkeys(row.get("codec") for row in rows))
    kbps = sorted({row["kbps"] for row in rows})
    for index, (key, label) in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, index + 1)
        series = [key] if key != "encode_rtf" else [key, "decode_rtf"]
        for number, codec in enumerate(codecs):
            mine = [row for row in rows if row.get("codec") == codec]
            for name in series:
                points = [(r["kbps"], r[name]) for r in mine if r.get(name) is not None]
                legend = [str(codec)] if len(codecs) > 1 and codec is not None else []
                if key == "encode_rtf":
                    legend.append(name.removesuffix("_rtf"))
                if points:  # one colour per codec; decode dashed beside encode
                    style = "o-" if name != "decode_rtf" else "s--"
                    color = f"C{number % 10}" if len(codecs) > 1 else None
                    name_of = " ".join(legend) or None
                    ax.plot(*zip(*points, strict=True), style, color=color, label=name_of)
        ax.set_xlabel("kbps")
        ax.set_ylabel(label)
        if len(codecs) == 1:
            ax.set_xticks(kbps)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0] and (key == "encode_rtf" or index == 0):
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_codebook_usage(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Heatmap of per-codebook utilisation (entropy / log2 K) at the highest bitrate evaluated."""
    candidates = [row for row in rows if row.get("codebook_utilization")]
    if not candidates:
        return None
    row = max(candidates, key=lambda r: r["streams"])
    grid = row["codebook_utilization"]
    fig = Figure(figsize=(1.2 * len(grid[0]) + 2.5, 0.5 * len(grid) + 1.8), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, values in enumerate(grid):
        for j, value in enumerate(values):
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", color="w" if value < 0.6 else "k"
            )
    ax.set_xticks(range(len(grid[0])), [f"g{j + 1}" for j in range(len(grid[0]))])
    ax.set_yticks(range(len(grid)), [f"s{i + 1}" for i in range(len(grid))])
    ax.set_xlabel("group")
    ax.set_ylabel("stream")
    fig.colorbar(image, ax=ax, label="utilisation")
    ax.set_title(f"{title}\ncodebook utilisation at {row['kbps']:g} kbps", fontsize=9)
    return _save(fig, path)
