"""Per-bitrate evaluation of a codec and the reports written from it.

``evaluate_codec`` measures quality, codebook utilisation, real bitrate and speed at each stream
count of a trained codec; ``evaluate_baselines`` does the same for the classical reference codecs
(Opus, Codec2) into rows of the same shape; ``write_report`` turns rows into CSV, JSON, a Markdown
table and plots, and ``staged_report`` makes a report folder appear whole or not at all.
``escx eval``, ``escx test`` and the ablation reports share them.

The names are imported on first use, so that ``escx eval`` can refuse bad arguments (through
:mod:`escx.evaluation.target`) before the metrics and their libraries load.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "check_report_target": "escx.evaluation.target",
    "evaluate_baselines": "escx.evaluation.classical",
    "evaluate_codec": "escx.evaluation.core",
    "markdown_table": "escx.evaluation.report",
    "parse_streams": "escx.evaluation.core",
    "staged_report": "escx.evaluation.staging",
    "write_report": "escx.evaluation.report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
