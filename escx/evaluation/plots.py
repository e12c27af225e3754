"""Report plots: quality vs bitrate, and codebook utilisation as a stream x group heatmap.

Drawn with matplotlib's object API (no pyplot state), so plotting works headless and in threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

# (row key, axis label) of the quality panels; a panel is drawn when any row has the key.
PANELS = [
    ("pesq", "PESQ-wb"),
    ("stoi", "STOI"),
    ("sisdr", "SI-SDR (dB)"),
    ("mel_distance", "mel distance"),
    ("dnsmos_ovrl", "DNSMOS OVRL"),
    ("visqol", "ViSQOL MOS-LQO"),
    ("speaker_sim", "speaker similarity"),
    ("bitrate_utilization", "bitrate utilisation"),
    ("encode_rtf", "real-time factor"),
]


def plot_quality(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """One panel per metric against the nominal bitrate; the speed panel has encode and decode."""
    panels = [p for p in PANELS if any(row.get(p[0]) is not None for row in rows)]
    cols = 3
    nrows = max(1, -(-len(panels) // cols))
    fig = Figure(figsize=(4 * cols, 3.2 * nrows), layout="constrained")
    kbps = [row["kbps"] for row in rows]
    for index, (key, label) in enumerate(panels):
        ax = fig.add_subplot(nrows, cols, index + 1)
        series = (
            [(key, None)] if key != "encode_rtf" else [(key, "encode"), ("decode_rtf", "decode")]
        )
        for name, legend in series:
            values = [row.get(name) for row in rows]
            points = [(k, v) for k, v in zip(kbps, values, strict=True) if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=legend)
        ax.set_xlabel("kbps")
        ax.set_ylabel(label)
        ax.set_xticks(kbps)
        ax.grid(alpha=0.3)
        if key == "encode_rtf":
            ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


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
    fig.savefig(path, dpi=110)
    return path
