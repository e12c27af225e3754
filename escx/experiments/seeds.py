"""Seed-to-seed spread of an ablation: the same study trained once per seed, summarised per
variant and bitrate as the mean over seeds with the lowest and highest seed's value.

At the budgets a CPU affords, two seeds of one variant can differ by more than two variants do;
a difference between variants counts only where their ranges do not overlap. The summary keeps
every seed's row (``results.csv``, with a ``seed`` column) beside the aggregate
(``summary.csv``, ``summary.md``), so nothing is averaged away.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from escx.atomic import atomic_path
from escx.evaluation.report import COLUMNS

# The summarised metrics, as the evaluation report shows them: (key, header, format).
SUMMARISED = ("pesq", "stoi", "sisdr", "mel_distance", "bitrate_utilization")
METRICS: list[tuple[str, str, str]] = [c for c in COLUMNS if c[0] in SUMMARISED]


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregate per-seed evaluation rows over seeds.

    Args:
        rows: evaluation rows, each with ``variant``, ``kbps``, ``seed`` and the metrics of
            :data:`METRICS` (None where a metric was not computed).

    Returns:
        One row per (variant, kbps), in first-seen order: ``variant``, ``kbps``, ``seeds`` (the
        seeds it aggregates) and, for each metric, ``<metric>`` (mean), ``<metric>_min`` and
        ``<metric>_max`` (None when no seed has the metric).
    """
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["kbps"]), []).append(row)
    summary = []
    for (variant, kbps), members in groups.items():
        out: dict[str, Any] = {
            "variant": variant,
            "kbps": kbps,
            "seeds": sorted(r["seed"] for r in members),
        }
        for key, _, _ in METRICS:
            values = [float(r[key]) for r in members if _finite(r.get(key))]
            out[key] = statistics.fmean(values) if values else None
            out[f"{key}_min"] = min(values) if values else None
            out[f"{key}_max"] = max(values) if values else None
        summary.append(out)
    return summary


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def spread_cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """``mean [min, max]`` of one metric, or ``n/a``."""
    if row.get(key) is None:
        return "n/a"
    low, high = (fmt.format(row[f"{key}_{end}"]) for end in ("min", "max"))
    return f"{fmt.format(row[key])} [{low}, {high}]"


def markdown_summary(summary: Sequence[dict[str, Any]], caption: str) -> str:
    """The summary as a Markdown table (cells ``mean [min, max]`` over seeds) and a caption."""
    header = ["variant", "kbps", "seeds", *(h for _, h, _ in METRICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for row in summary:
        cells = [row["variant"], f"{row['kbps']:g}", str(len(row["seeds"]))]
        cells += [spread_cell(row, key, fmt) for key, _, fmt in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n*{caption}*\n"


def write_summary(
    rows: Sequence[dict[str, Any]], out: Path, title: str, caption: str
) -> list[dict[str, Any]]:
    """Write the seed summary of ``rows`` into ``out``; returns the summary rows.

    Files: ``summary.csv`` (mean, min and max per variant and bitrate; the seeds separated by
    spaces), ``summary.md`` (the table, cells ``mean [min, max]``) and ``quality_spread.png``
    (each metric against bitrate: the mean, with a bar from the lowest to the highest seed).
    """
    summary = summarize(rows)
    with atomic_path(out / "summary.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(summary[0]) if summary else ["variant"])
        writer.writeheader()
        writer.writerows({**row, "seeds": " ".join(map(str, row["seeds"]))} for row in summary)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(f"# {title}\n\n" + markdown_summary(summary, caption))
    plot_spread(summary, out / "quality_spread.png", title)
    return summary


def plot_spread(summary: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Each metric against bitrate per variant: the mean over seeds, bars from min to max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 3.2))
    variants = list(dict.fromkeys(r["variant"] for r in summary))
    for ax, (key, label, _) in zip(axes, METRICS, strict=True):
        for name in variants:
            mine = [r for r in summary if r["variant"] == name and r.get(key) is not None]
            means = [r[key] for r in mine]
            below = [r[key] - r[f"{key}_min"] for r in mine]
            above = [r[f"{key}_max"] - r[key] for r in mine]
            ax.errorbar([r["kbps"] for r in mine], means, yerr=[below, above], marker="o",
                        capsize=3, label=name)  # fmt: skip
        ax.set_xlabel("kbps")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    seeds = sorted({s for r in summary for s in r["seeds"]})
    fig.suptitle(f"{title}: mean over seeds {', '.join(map(str, seeds))}, bars min to max")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
