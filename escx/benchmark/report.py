"""Markdown report of an ``escx bench`` result, with same-run ratios and escx's speed targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASELINE = "straightforward fp32"


def write_report(out: Path, name: str, result: dict[str, Any], text: str) -> tuple[Path, Path]:
    """Write ``out/NAME.json`` (the result) and ``out/NAME.md`` (its Markdown ``text``);
    returns both paths. Every ``escx bench`` mode reports this way."""
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{name}.json", out / f"{name}.md")
    paths[0].write_text(json.dumps(result, indent=2) + "\n")
    paths[1].write_text(text + "\n")
    return paths


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _round_trip(rows: list[dict[str, Any]], variant: str, kbps: float) -> dict[str, float] | None:
    """Encode + decode at ``kbps`` for one variant: seconds, GFLOP, GFLOP/s, fraction of peak."""
    mine = [r for r in rows if r["variant"] == variant and r["kbps"] == kbps]
    if len(mine) != 2:
        return None
    seconds = sum(r["median_s"] for r in mine)
    gflop = sum(r["gflop"] for r in mine)
    peak = mine[0]["gflops"] / mine[0]["peak_fraction"]
    return {"seconds": seconds, "gflop": gflop, "gflops": gflop / seconds,
            "peak_fraction": gflop / seconds / peak}  # fmt: skip


def device_section(result: dict[str, Any], env: dict[str, Any]) -> list[str]:
    rows, peaks = result["inference"], result["matmul_peak_gflops"]
    top = result.get("top_kbps", 9.0)  # the highest bitrate: 9 kbps for ESC
    lines = [
        f"## {result['device']}",
        "",
        f"Matrix-multiply peak measured in this run (2048^3, median of 7): fp32 "
        f"{peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s.",
        "",
        f"### Inference: {env['seconds']:g} s of audio, median of {env['repeats']} after warm-up",
        "",
        "Work is the FLOP count of the straightforward fp32 path (matmuls and convolutions), so "
        "GFLOP/s compare like with like; % of peak uses the peak of the variant's precision. "
        "A variant that computes the same function with fewer FLOPs is credited with the "
        "straightforward work, so it can exceed 100% (escx's composed de-embedding does 11.7x "
        "less work than ESC's two de-embedding convolutions, 40% of decode's FLOPs, "
        "docs/esc.md §12.1). Peak memory is the process's peak resident set on the CPU (it "
        "includes everything loaded so far) and allocated tensor memory on a GPU. First call "
        "includes compilation.",
        "",
        "| variant | op | kbps | median s (min-max) | RTF | GFLOP | GFLOP/s | % of peak | "
        "peak memory MB | first call s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['op']} | {r['kbps']:g} | {r['median_s']:.3f} "
            f"({r['min_s']:.3f}-{r['max_s']:.3f}) | {r['rtf']:.3f} | {r['gflop']:.1f} | "
            f"{r['gflops']:.0f} | {100 * r['peak_fraction']:.0f}% | {_mb(r['peak_memory_mb'])} | "
            f"{r['first_call_s']:.2f} |"
        )
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    base = _round_trip(rows, BASELINE, top)
    lines += [
        "",
        f"**Encode + decode at {top:g} kbps** (ratios within this run):",
        "",
        "| variant | seconds | GFLOP/s | % of peak | speed-up vs straightforward | codes equal to "
        "straightforward |",
        "|---|---|---|---|---|---|",
    ]
    for name in variants:
        trip = _round_trip(rows, name, top)
        if trip is None:
            continue
        speedup = base["seconds"] / trip["seconds"] if base else float("nan")
        agree = result["code_agreement"].get(name)
        lines.append(
            f"| {name} | {trip['seconds']:.3f} | {trip['gflops']:.0f} | "
            f"{100 * trip['peak_fraction']:.0f}% | {speedup:.2f}x | "
            f"{'n/a' if agree is None else f'{100 * agree:.2f}%'} |"
        )
    lines += _reference_lines(result, top)
    lines += _training_lines(result["training"])
    lines += _quality_lines(result.get("quality"))
    lines += _target_lines(result)
    return lines


def _reference_lines(result: dict[str, Any], top: float) -> list[str]:
    """DAC beside the benchmarked codec: its rows, then parameter and time ratios."""
    refs = result.get("references") or []
    if not refs:
        return []
    lines = [
        "",
        "### DAC beside it (random weights, fp32, plain PyTorch, same audio and threads)",
        "",
        "| model | parameters | op | kbps | median s (min-max) | RTF | GFLOP | GFLOP/s | "
        "% of fp32 peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in refs:
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['op']} | {r['kbps']:g} | "
            f"{r['median_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f}) | {r['rtf']:.3f} | "
            f"{r['gflop']:.1f} | {r['gflops']:.0f} | {100 * r['peak_fraction']:.0f}% |"
        )
    ours = {name: _round_trip(result["inference"], name, top) for name in (BASELINE, "escx fp32")}
    params = result.get("parameters")
    lines += [
        "",
        f"Against the benchmarked codec ({params:,} parameters; encode + decode at {top:g} kbps):"
        if params
        else "Against the benchmarked codec:",
        "",
        "| model | kbps | encode + decode s | x parameters | x time of escx fp32 | "
        "x time of straightforward fp32 |",
        "|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in refs):
        mine = [r for r in refs if r["model"] == model]
        seconds = sum(r["median_s"] for r in mine)
        slower = [
            f"{seconds / ours[name]['seconds']:.2f}x" if ours[name] else "n/a"
            for name in ("escx fp32", BASELINE)
        ]
        times = mine[0]["parameters"] / params if params else float("nan")
        lines.append(
            f"| {model} | {mine[0]['kbps']:g} | {seconds:.3f} | {times:.2f}x | {slower[0]} | "
            f"{slower[1]} |"
        )
    return lines


def _training_lines(steps: list[dict[str, Any]]) -> list[str]:
    if not steps:
        return []
    base = next((s for s in steps if s["variant"] == BASELINE), steps[0])
    first = steps[0]
    lines = [
        "",
        f"### Training step: batch {first['batch']} x {first['seconds_per_clip']:g} s, forward + "
        "backward + AdamW (ESC-Base's loss terms, DAC's for a codec without an STFT; all streams)",
        "",
        "Each variant runs in a fresh process from the same weights and batch (peak memory is its "
        "own); the straightforward step keeps the C library's default allocator, escx's run with "
        "its tuned allocator. First loss: the loss of the first step.",
        "",
        "| variant | median s (min-max) | clips/s | speed-up vs straightforward | first loss | "
        "loss - straightforward | peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s['variant']} | {s['median_s']:.3f} ({s['min_s']:.3f}-{s['max_s']:.3f}) | "
            f"{s['clips_per_s']:.2f} | {base['median_s'] / s['median_s']:.2f}x | "
            f"{s['first_loss']:.7g} | {s['first_loss'] - base['first_loss']:+.2e} | "
            f"{_mb(s['peak_memory_mb'])} |"
        )
    return lines


def _quality_lines(quality: dict[str, Any] | None) -> list[str]:
    if not quality:
        return [
            "",
            "bf16 quality check: not run (needs a trained codec: `--model CKPT` or "
            "`--quality-model CKPT`).",
        ]
    lines = [
        "",
        f"### bf16 against fp32 quality ({quality['files']} files from {quality['data']}, "
        f"model {quality['model']})",
        "",
        "| precision | kbps | PESQ | mel distance |",
        "|---|---|---|---|",
    ]
    for r in quality["rows"]:
        pesq = "n/a" if r["pesq"] is None else f"{r['pesq']:.3f}"
        lines.append(f"| {r['precision']} | {r['kbps']:g} | {pesq} | {r['mel_distance']:.3f} |")
    return lines


def _target_lines(result: dict[str, Any]) -> list[str]:
    """The issue's targets, measured values against them (they are set for the 2-core CPU)."""
    rows = result["inference"]
    lines = ["", "### Targets", ""]
    fp32 = _round_trip(rows, "escx fp32", 9.0)
    if fp32:
        lines.append(f"- fp32 encode + decode at 9 kbps >= 70% of the fp32 matmul peak: "
                     f"{100 * fp32['peak_fraction']:.0f}% ({fp32['seconds']:.3f} s)")  # fmt: skip
    agree = result["code_agreement"].get("escx fp32")
    if agree is not None:
        lines.append(f"- escx fp32 codes identical to the straightforward path: {agree == 1.0} "
                     f"({100 * agree:.2f}% equal)")  # fmt: skip
    bf16 = _round_trip(rows, "escx bf16", 9.0)
    if bf16:
        lines.append(f"- bf16 encode + decode at 9 kbps <= 0.7 s: {bf16['seconds']:.3f} s")
    for precision in ("fp32", "bf16"):
        own = _round_trip(rows, f"escx {precision}", 9.0)
        torch_ops = _round_trip(rows, f"escx {precision}, PyTorch ops only", 9.0)
        if own and torch_ops:
            lines.append(f"- native kernels' share, {precision}: {torch_ops['seconds']:.3f} s with "
                         f"PyTorch ops only -> {own['seconds']:.3f} s "
                         f"({torch_ops['seconds'] / own['seconds']:.2f}x)")  # fmt: skip
    quality = result.get("quality")
    if quality:
        drops = ", ".join(f"{k:g} kbps {v:+.3f}" for k, v in quality["pesq_drop"].items()
                          if v is not None)  # fmt: skip
        lines.append(f"- bf16 PESQ within 0.05 of fp32: drop {drops}")
    steps = {s["variant"]: s for s in result["training"]}
    if BASELINE in steps and "escx fp32" in steps:
        base, ours = steps[BASELINE], steps["escx fp32"]
        best = min((s for s in steps.values() if s["precision"] == "fp32"),
                   key=lambda s: s["median_s"])  # fmt: skip
        lines.append(
            f"- fp32 training step >= 1.5x the straightforward step with identical loss: escx "
            f"{base['median_s'] / ours['median_s']:.2f}x (loss difference "
            f"{ours['first_loss'] - base['first_loss']:+.1e}); fastest fp32 variant "
            f"'{best['variant']}' {base['median_s'] / best['median_s']:.2f}x (loss difference "
            f"{best['first_loss'] - base['first_loss']:+.1e})"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# escx bench",
        "",
        f"Model: {env['model']}. torch {env['torch']}, {env['threads']} threads on {env['cpu']} "
        f"({env['cores']} cores){', GPU ' + env['cuda'] if env['cuda'] else ''}. "
        f"escx's native CPU kernels: {env.get('native_kernels', 'not recorded')}.",
        "",
    ]
    for device_result in result["results"]:
        lines += device_section(device_result, env)
        lines.append("")
    return "\n".join(lines)
