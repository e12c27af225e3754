"""Does bf16 inference cost quality? PESQ of a trained codec at fp32 and bf16 on real speech.

Only meaningful with trained weights (``escx bench --model CKPT`` or ``--quality-model CKPT``):
a random-weight codec scores PESQ about 1 at any precision, which would make the comparison pass
for nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from escx.audio import find_audio_files


def precision_quality(
    model: str, data: str, max_files: int, device: torch.device
) -> dict[str, Any]:
    """Mean PESQ / mel distance at 1.5 and 9 kbps, fp32 against bf16, on ``max_files`` files.

    Returns:
        ``{"files", "rows": [{precision, kbps, pesq, mel_distance}], "pesq_drop": {kbps: drop}}``.
    """
    from escx.api import load_codec
    from escx.evaluation.core import evaluate_codec

    files = find_audio_files(data)[:max_files]
    if not files:
        raise ValueError(f"no audio files under {data} for the bf16 quality check")
    rows = []
    for precision in ("fp32", "bf16"):
        handle = load_codec(model, device=device, precision=precision)
        streams = [1, handle.codec.max_streams]
        # Only PESQ and mel distance are compared: the model-based metrics would add ~1.5 s per
        # clip and bitrate to the benchmark for columns it does not read.
        for row in evaluate_codec(handle, files, streams, with_stoi=False, with_models=False):
            rows.append({"precision": precision, "kbps": row["kbps"], "pesq": row["pesq"],
                         "mel_distance": row["mel_distance"]})  # fmt: skip
    by = {(r["precision"], r["kbps"]): r["pesq"] for r in rows}
    drop = {
        kbps: (by[("fp32", kbps)] - by[("bf16", kbps)])
        if by[("fp32", kbps)] is not None and by[("bf16", kbps)] is not None
        else None
        for (precision, kbps) in by
        if precision == "fp32"
    }
    return {"files": len(files), "data": data, "model": model, "rows": rows, "pesq_drop": drop}
