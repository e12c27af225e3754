"""Quality against training step, read from the CSV a run logs and drawn for several runs.

A run that stacks ``experiments/logging/wandb-and-csv.yaml`` writes every logged value to
``<run folder>/csv/version_N/metrics.csv`` (one version per session: a resumed run adds one).
Validation logs ``val/<metric>@<kbps>`` (``val/pesq@9kbps``) at the step it ran; these points,
over all versions, make a curve per metric and bitrate.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

# (metric, axis label) of the panels, in order.
CURVE_METRICS = [("pesq", "PESQ-wb"), ("sisdr", "SI-SDR (dB)"), ("mel_distance", "mel distance")]
_NAME = re.compile(r"val/(?P<metric>\w+)@(?P<kbps>[\d.]+)kbps")

# curves[metric][kbps] = [(step, value), ...] sorted by step
Curves = dict[str, dict[float, list[tuple[int, float]]]]


def read_curves(root: Path) -> Curves:
    """The validation curves of the run in ``root``, from every CSV version it holds.

    A step logged by two versions (a session stopped after validating, then resumed) keeps the
    later version's value.
    """
    points: dict[str, dict[float, dict[int, float]]] = {}
    files = sorted(root.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for file in files:
        with open(file, newline="") as handle:
            for row in csv.DictReader(handle):
                for name, value in row.items():
                    match = _NAME.fullmatch(name or "")
                    if match is None or not value or not row.get("step"):
                        continue
                    kbps = float(match["kbps"])
                    by_step = points.setdefault(match["metric"], {}).setdefault(kbps, {})
                    # Lightning logs the validation that follows the n-th training step at step
                    # n - 1 (the index of that step's batch); curves count steps trained.
                    by_step[int(row["step"]) + 1] = float(value)
    return {
        metric: {kbps: sorted(steps.items()) for kbps, steps in sorted(by_kbps.items())}
        for metric, by_kbps in points.items()
    }


def write_curves_csv(runs: Mapping[str, Curves], path: Path) -> Path:
    """One row per run, metric, bitrate and step (``run, metric, kbps, step, value``)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "metric", "kbps", "step", "value"])
        for run, curves in runs.items():
            for metric, by_kbps in curves.items():
                for kbps, points in by_kbps.items():
                    writer.writerows([run, metric, f"{kbps:g}", s, v] for s, v in points)
    return path


def plot_curves(
    runs: Mapping[str, Curves],
    path: Path,
    title: str,
    marks: Sequence[tuple[int, str]] = (),
) -> Path:
    """One panel per metric of :data:`CURVE_METRICS` against step; a colour per run, a line style
    per bitrate (solid for the highest). ``marks`` are labelled vertical lines (e.g. the step
    where the quantizer switches on)."""
    from matplotlib.figure import Figure  # matplotlib loads only when a report draws

    fig = Figure(figsize=(4.2 * len(CURVE_METRICS), 3.4), layout="constrained")
    styles = ["-", "--", ":", "-."]
    colours = [f"C{i}" for i in range(10)]
    for index, (metric, label) in enumerate(CURVE_METRICS):
        ax = fig.add_subplot(1, len(CURVE_METRICS), index + 1)
        for colour, (run, curves) in zip(colours, runs.items(), strict=False):
            by_kbps = curves.get(metric, {})
            for style, kbps in zip(styles, sorted(by_kbps, reverse=True), strict=False):
                steps, values = zip(*by_kbps[kbps], strict=True) if by_kbps[kbps] else ((), ())
                ax.plot(steps, values, style, color=colour, marker="o", markersize=3,
                        label=f"{run} @ {kbps:g} kbps")  # fmt: skip
        for step, text in marks:
            ax.axvline(step, color="0.6", linewidth=0.8)
            ax.annotate(text, (step, 0.02), xycoords=("data", "axes fraction"), fontsize=7,
                        ha="right", va="bottom", color="0.4", rotation=90)  # fmt: skip
        ax.set_xlabel("steps trained")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if index == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"{title}: validation quality against steps trained (solid: highest kbps)")
    fig.savefig(path, dpi=100)
    return path
