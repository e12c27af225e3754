"""The parts of a study's report that are not per-bitrate rows: its caption and its plots."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def study_caption(
    args: argparse.Namespace, rows: list[dict[str, Any]], stacks: dict[str, str], note: str
) -> str:
    """The report's caption: scale and parameters, budget, seeds, data, each variant's recipe
    and configs (``stacks``), and the study's ``note``."""
    params = sorted({r["params"] for r in rows if r.get("params")})
    counts = ", ".join(f"{p:,}" for p in params)
    scale = (
        f"reduced-size models ({counts} parameters), NOT the paper's setting (SCALE=base)"
        if args.scale == "tiny"
        else f"full-size models ({counts} parameters)"
    )
    stacked = "; ".join(f"{name}: {stack}" for name, stack in stacks.items())
    seeds = list(getattr(args, "seeds", None) or [args.seed])
    classical = sorted({r["variant"] for r in rows if r.get("recipe") == "classical"})
    word = "seed" if len(seeds) == 1 else "seeds"
    # Several devices train on several batches a step (data-parallel), so steps alone would
    # understate the budget: on a CPU two processes reach quality one reaches in far more steps.
    devices = str(getattr(args, "devices", "1"))
    parallel = "" if devices == "1" else f" on --devices {devices} (data-parallel)"
    return (
        f"{scale}; {args.steps:,} training step{'' if args.steps == 1 else 's'} per variant"
        f"{parallel}, "
        f"{word} {', '.join(map(str, seeds))}, "
        f"data {args.data} (evaluated on {rows[0]['files'] if rows else 0} validation files); "
        f"same budget and {word} for every variant. Recipe and configs stacked: {stacked}."
        + (f" {note}" if note else "")
        + (
            f" Classical reference on the same clips: {', '.join(classical)} (not trained)."
            if classical
            else ""
        )
    )


def study_plots(rows: list[dict[str, Any]], out: Path, study: str) -> list[Path]:
    """Quality against bitrate and bitrate utilisation, one line per variant; returns paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("pesq", "PESQ-wb"), ("mel_distance", "mel distance"), ("sisdr", "SI-SDR (dB)")]
    metrics += [
        (key, label)
        for key, label in (("dnsmos_ovrl", "DNSMOS OVRL"), ("visqol", "ViSQOL"))
        if any(r.get(key) is not None for r in rows)
    ]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, (key, label) in zip(axes, metrics, strict=True):
        for name in variants:
            mine = [r for r in rows if r["variant"] == name and r.get(key) is not None]
            ax.plot([r["kbps"] for r in mine], [r[key] for r in mine], marker="o", label=name)
        ax.set_xlabel("kbps")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"ablation: {study}")
    fig.tight_layout()
    fig.savefig(out / "quality_vs_bitrate.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name in variants:
        mine = [r for r in rows if r["variant"] == name and "bitrate_utilization" in r]
        if not mine:  # a classical codec has no codebooks
            continue
        ax.plot([r["kbps"] for r in mine], [r["bitrate_utilization"] for r in mine], marker="o",
                label=name)  # fmt: skip
    ax.set_xlabel("kbps")
    ax.set_ylabel("bitrate utilisation (entropy / bits)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "codebook_utilization.png", dpi=100)
    plt.close(fig)
    return [out / "quality_vs_bitrate.png", out / "codebook_utilization.png"]
