"""Compare trained runs by ear: evaluate each run's checkpoint on the same clips, one page.

Used by ``escx sweep``: every finished run is evaluated at its highest bitrate on the same
validation clips, and report.html shows one row per clip and one column per run (after the
original), above a table with every metric per run.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def run_data(root: Path) -> Path | None:
    """The validation folder a run trained with (``data.val`` of its saved config), if any."""
    from escx.config import load_yaml

    config = root / "config.yaml"
    if not config.is_file():
        return None
    val = (load_yaml(config).get("data") or {}).get("val")
    return Path(val) if isinstance(val, str) and Path(val).exists() else None


def compare_runs(
    runs: Sequence[tuple[str, Path]],
    files: Sequence[Path],
    out_dir: Path,
    title: str,
    caption: str,
    listen: int = 4,
    with_models: bool = True,
) -> Path:
    """Evaluate each ``(name, checkpoint)`` at its highest bitrate and write the comparison page.

    Args:
        runs: run names (the page's columns) and their checkpoints.
        files: the clips every run is evaluated on.
        out_dir: the report folder (report.html, audio/, spectrograms/ go there).
        title: page heading.
        caption: line under the heading.
        listen: clips with players.
        with_models: also compute the model-based metrics (DNSMOS, ViSQOL, speaker similarity).

    Returns:
        Path of report.html.
    """
    from escx.api import load_codec
    from escx.evaluation.core import evaluate_codec
    from escx.evaluation.listening import Listening
    from escx.evaluation.page import write_page

    rows: list[dict[str, Any]] = []
    listening = None
    for name, checkpoint in runs:
        handle = load_codec(checkpoint)
        if listening is None:
            listening = Listening(out_dir, handle.sample_rate, listen)
        top = handle.codec.max_streams
        callback = listening.variant(name, handle.kbps, [top])
        log.info("evaluating %s on %d clips", name, len(files))
        for row in evaluate_codec(handle, files, [top], with_models=with_models, listen=callback):
            rows.append({"variant": name, **row})
    return write_page(out_dir, title, rows, caption, (), listening)
