"""Per-bitrate evaluation of a codec and the reports written from it.

``evaluate_codec`` measures quality, codebook utilisation, real bitrate and speed at each stream
count; ``write_report`` turns its rows into CSV, JSON, a Markdown table and plots. ``escx eval``,
``escx test`` and the ablation reports share them.
"""

from escx.evaluation.core import evaluate_codec, parse_streams
from escx.evaluation.report import markdown_table, write_report

__all__ = ["evaluate_codec", "markdown_table", "parse_streams", "write_report"]
