"""The ESC paper's headline comparison as one study, and Opus beside every study.

``escx ablation baseline`` (``make ablation-baseline``) trains ESC and DAC with the same harness,
data, steps and seed, evaluates both at the same six bitrates (1.5 to 9 kbps: ESC's 1 to 6
streams, DAC's 3 to 18 codebooks of 0.5 kbps) and puts the paper's three claims beside what this
run measured (:func:`headline`):

* quality: ESC-Base is close to DAC-Base (PESQ-wb 4.01 against 4.21 at 9 kbps, read from the
  authors' figure) and beats a DAC of its own size (DAC-Tiny, 3.48);
* parameters: DAC-Base has about 9x ESC-Base's (74.31 M against 8.39 M);
* speed: ESC encodes about 2x faster on a CPU.

The quality figures come from the trained models of the study; the parameter and speed ratios
also at the paper's scale, with ESC-Base and the 18-codebook DAC built with random weights (run
time does not depend on them) and timed on 10 s of audio in the same process
(:func:`paper_scale_speed`).

Every study's report also carries libopus at 6, 9 and 12 kbps on the same clips
(:func:`opus_rows`), so a reader can tell whether a trained codec is any good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# The study's bitrates: ESC's six (1 to 6 streams) and the same for DAC (3 to 18 codebooks).
BASELINE_KBPS = (1.5, 3.0, 4.5, 6.0, 7.5, 9.0)
TOP_KBPS = BASELINE_KBPS[-1]

# DAC's arm per scale. SCALE=tiny: dac-tiny.yaml's recipe with 18 codebooks and widths chosen so
# that its parameter count matches the tiny ESC's (448,384 against 446,266); SCALE=base: the
# 16 kHz DAC with 18 codebooks, DAC's own recipe (the paper's DAC-Base).
DAC_MODELS = {
    "tiny": [
        "experiments/dac.yaml",
        "experiments/dac-tiny.yaml",
        "experiments/dac-tiny-matched.yaml",
    ],
    "base": ["experiments/dac.yaml", "experiments/dac-9kbps.yaml"],
}

# The paper's side (docs/esc.md §15, §11 and the abstract). PESQ-wb at 9 kbps read from the
# authors' figure; parameters from their model table.
PAPER = {
    "pesq_esc": 4.01,  # ESC-Base (non-adversarial)
    "pesq_dac_base": 4.21,  # DAC-Base (adversarial), 18 codebooks
    "pesq_dac_tiny": 3.48,  # DAC-Tiny (non-adversarial), about ESC-Base's size
    "params_esc": 8.39e6,
    "params_dac": 74.31e6,
    "encode_speedup": 2.0,  # "about 2x faster" CPU encoding
}


def opus_rows(
    files: Sequence[Any],
    with_models: bool,
    record: Callable[[str, str, int, str, Tensor], None] | None = None,
) -> list[dict[str, Any]]:
    """libopus at its default bitrates (6, 9, 12 kbps) on ``files``, as study rows.

    Args:
        files: the clips the variants were evaluated on.
        with_models: also compute the model-based metrics.
        record: ``record(grid, column, index, name, audio)`` of a listening recorder; Opus at a
            bitrate whose grid exists (``"9 kbps"``) is added to it as the column ``opus``.

    Returns:
        Rows with ``variant`` = ``"opus"``, or none (with a warning) when libopus or opuslib is
        missing: a study never fails for want of its reference line.
    """
    from escx.baselines import BaselineUnavailable
    from escx.evaluation.classical import evaluate_baselines

    def listen(index: int, name: str, label: str | None, audio: Tensor) -> None:
        if record is not None and label is not None:
            codec, _, grid = label.partition(" ")  # "opus 9 kbps" -> grid "9 kbps"
            record(grid, codec, index, name, audio)

    try:
        rows = evaluate_baselines(
            ["opus"], files, progress=True, with_models=with_models, listen=listen
        )
    except BaselineUnavailable as error:
        log.warning("no Opus rows in this report: %s", error)
        return []
    return [
        {"variant": "opus", "recipe": "classical", "params": None, "steps": None, **row}
        for row in rows
    ]


def _encode_decode_seconds(
    codec: Any, audio: Tensor, repeats: int, warmup: int
) -> tuple[float, float]:
    """Median seconds of ``codec``'s encode and decode of ``audio`` (1, L) at 9 kbps."""
    from escx.benchmark.measure import time_calls

    streams, length = codec.streams_for_kbps(TOP_KBPS), audio.shape[-1]
    with torch.inference_mode():
        codes = codec.encode(audio, streams)

    def encode() -> Tensor:
        with torch.inference_mode():
            return codec.encode(audio, streams)

    def decode() -> Tensor:
        with torch.inference_mode():
            return codec.decode(codes, length)

    cpu = torch.device("cpu")
    return (
        time_calls(encode, repeats, warmup, cpu).median,
        time_calls(decode, repeats, warmup, cpu).median,
    )


def paper_scale_speed(
    seconds: float = 10.0, repeats: int = 5, warmup: int = 2
) -> list[dict[str, Any]]:
    """CPU encode and decode time of ``seconds`` of audio at 9 kbps for ESC-Base (escx's path
    and the straightforward PyTorch path, which is how DAC runs) and the 18-codebook DAC, random
    weights, in this process.

    Returns:
        Rows ``{"model", "parameters", "encode_s", "decode_s"}`` (medians over ``repeats``).
    """
    import contextlib

    import escx
    from escx.experiments.recipes import config_path
    from escx.perf import straightforward

    torch.manual_seed(0)
    audio = 0.1 * torch.randn(1, int(seconds * 16000))
    models = (
        ("ESC-Base (escx)", ["experiments/esc.yaml"], contextlib.nullcontext),
        ("ESC-Base (straightforward PyTorch)", ["experiments/esc.yaml"], straightforward),
        ("DAC, 18 codebooks", DAC_MODELS["base"], contextlib.nullcontext),
    )
    rows = []
    for name, configs, path in models:
        codec = escx.build_codec(*[config_path(c) for c in configs]).eval()
        with path():
            encode, decode = _encode_decode_seconds(codec, audio, repeats, warmup)
        params = sum(p.numel() for p in codec.parameters())
        rows.append({"model": name, "parameters": params, "encode_s": encode, "decode_s": decode,
                     "seconds": seconds})  # fmt: skip
        log.warning("%s: encode %.3f s, decode %.3f s per %g s", name, encode, decode, seconds)
        del codec  # DAC holds 300 MB of weights: one model at a time
    return rows


def _at(rows: Sequence[dict[str, Any]], variant: str, kbps: float) -> dict[str, Any] | None:
    return next((r for r in rows if r["variant"] == variant and r["kbps"] == kbps), None)


def headline(
    rows: Sequence[dict[str, Any]], speed: Sequence[dict[str, Any]], scale: str
) -> list[dict[str, str]]:
    """The paper's three claims beside this run's figures, one row per claim.

    Args:
        rows: the study's rows (variants ``esc`` and ``dac``, Opus optional).
        speed: :func:`paper_scale_speed` rows (may be empty when not measured).
        scale: the study's scale (``tiny`` or ``base``), named in the cells.

    Returns:
        Rows ``{"claim", "paper", "escx"}`` of plain text.
    """
    esc, dac = _at(rows, "esc", TOP_KBPS), _at(rows, "dac", TOP_KBPS)
    opus = _at(rows, "opus", TOP_KBPS)
    study = "reduced-size models" if scale == "tiny" else "full-size models"
    if esc and dac and esc.get("pesq") is not None and dac.get("pesq") is not None:
        quality = (
            f"{esc['pesq'] - dac['pesq']:+.2f} ({study}, equal budget: ESC {esc['pesq']:.2f}, "
            f"DAC {dac['pesq']:.2f}"
            + (f"; Opus {opus['pesq']:.2f}" if opus and opus.get("pesq") is not None else "")
            + ")"
        )
    else:
        quality = "not measured (a variant has no PESQ at 9 kbps)"
    p = PAPER
    lines = [
        {
            "claim": "quality at 9 kbps, PESQ-wb ESC minus DAC",
            "paper": f"{p['pesq_esc'] - p['pesq_dac_base']:+.2f} against DAC-Base "
            f"({p['pesq_esc']:.2f} vs {p['pesq_dac_base']:.2f}); "
            f"{p['pesq_esc'] - p['pesq_dac_tiny']:+.2f} against DAC-Tiny of ESC's size",
            "escx": quality,
        }
    ]
    by_model = {r["model"]: r for r in speed}
    esc_fast = by_model.get("ESC-Base (escx)")
    esc_plain = by_model.get("ESC-Base (straightforward PyTorch)")
    dac_base = by_model.get("DAC, 18 codebooks")
    trained = []
    if esc and dac and esc.get("params") and dac.get("params"):
        trained.append(
            f"{dac['params'] / esc['params']:.2f}x in this study ({dac['params']:,} / "
            f"{esc['params']:,}, matched on purpose)"
        )
    if esc_fast and dac_base:
        trained.insert(
            0,
            f"{dac_base['parameters'] / esc_fast['parameters']:.2f}x at full size "
            f"({dac_base['parameters']:,} / {esc_fast['parameters']:,})",
        )
    lines.append(
        {
            "claim": "parameters, DAC / ESC",
            "paper": f"{p['params_dac'] / p['params_esc']:.2f}x "
            f"({p['params_dac'] / 1e6:.2f} M / {p['params_esc'] / 1e6:.2f} M)",
            "escx": "; ".join(trained) or "not measured",
        }
    )
    speeds = []
    if dac_base and esc_plain and esc_fast:
        speeds.append(
            f"{dac_base['encode_s'] / esc_plain['encode_s']:.2f}x at full size, both "
            f"straightforward PyTorch ({dac_base['encode_s']:.2f} s / {esc_plain['encode_s']:.2f} "
            f"s per {dac_base['seconds']:g} s; escx's ESC path {esc_fast['encode_s']:.2f} s: "
            f"{dac_base['encode_s'] / esc_fast['encode_s']:.2f}x)"
        )
    if esc and dac and esc.get("encode_rtf") and dac.get("encode_rtf"):
        speeds.append(
            f"{dac['encode_rtf'] / esc['encode_rtf']:.2f}x for the study's models "
            f"(real-time factors {dac['encode_rtf']:.3f} / {esc['encode_rtf']:.3f})"
        )
    lines.append(
        {
            "claim": "CPU encode time at 9 kbps, DAC / ESC",
            "paper": f"about {p['encode_speedup']:g}x",
            "escx": "; ".join(speeds) or "not measured",
        }
    )
    return lines


def headline_markdown(lines: Sequence[dict[str, str]], threads: int) -> str:
    """The headline rows as a Markdown table with a note on how speed was measured."""
    out = ["| claim | paper | escx, this run |", "|---|---|---|"]
    out += [f"| {r['claim']} | {r['paper']} | {r['escx']} |" for r in lines]
    out.append(
        f"\nSpeed: medians of timed calls after warm-up, {threads} CPU threads, fp32, in the "
        "study's own process; full-size models with random weights (run time does not depend "
        "on them). Paper: docs/esc.md §11, §15 (PESQ read from the authors' figure)."
    )
    return "\n".join(out) + "\n"
