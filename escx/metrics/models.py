"""The model-based quality metrics of the optional ``eval`` extra, and what is missing without it.

DNSMOS, ViSQOL and speaker similarity each need a package (and its bundled model) that plain escx
does not install. :func:`model_quality_metrics` returns the ones whose packages import and logs
one line naming the report columns that are missing and how to get them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from torchmetrics import Metric, MetricCollection

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -c constraints.txt -e ".[eval]"'


@dataclass(frozen=True)
class ModelMetric:
    """One optional metric: collection key, report columns, modules it needs, its class."""

    key: str
    columns: tuple[str, ...]
    modules: tuple[str, ...]
    factory: str  # "module:Class", imported only when the packages are there

    def available(self) -> bool:
        """True when every module it needs can be imported (checked without importing)."""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    def build(self, sample_rate: int) -> Metric:
        """The metric for inputs at ``sample_rate``."""
        module, name = self.factory.split(":")
        return getattr(importlib.import_module(module), name)(sample_rate)


MODEL_METRICS = (
    ModelMetric(
        "dnsmos",
        ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"),
        ("speechmos", "onnxruntime", "librosa"),
        "escx.metrics.dnsmos:DNSMOS",
    ),
    ModelMetric("visqol", ("visqol",), ("visqol",), "escx.metrics.visqol:ViSQOL"),
    # webrtcvad (a resemblyzer dependency) imports pkg_resources, which setuptools < 81 provides.
    ModelMetric(
        "speaker_sim",
        ("speaker_sim",),
        ("resemblyzer", "webrtcvad", "pkg_resources"),
        "escx.metrics.speaker:SpeakerSimilarity",
    ),
)

# Row keys / report columns of all model-based metrics, in report order.
MODEL_COLUMNS = tuple(c for m in MODEL_METRICS for c in m.columns)

_warned: set[tuple[str, ...]] = set()


def missing_model_columns() -> list[str]:
    """Report columns whose packages are not installed."""
    return [c for m in MODEL_METRICS if not m.available() for c in m.columns]


def model_quality_metrics(sample_rate: int = 16000) -> MetricCollection:
    """DNSMOS (SIG, BAK, OVRL), ViSQOL and speaker similarity, as far as they are installed.

    Result keys are ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_ovrl``, ``visqol`` and
    ``speaker_sim``. Missing packages are reported once per process in one log line.
    """
    missing = tuple(missing_model_columns())
    if missing and missing not in _warned:
        _warned.add(missing)
        logger.warning(
            "quality columns %s are not computed: their packages are not installed (%s)",
            ", ".join(missing),
            INSTALL_HINT,
        )
    metrics = {m.key: m.build(sample_rate) for m in MODEL_METRICS if m.available()}
    # compute_groups=False for the same reason as speech_quality_metrics: shared state names.
    return MetricCollection(metrics, compute_groups=False)
