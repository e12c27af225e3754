"""Data: audio sources (folders, manifests, WebDataset shards, Hugging Face datasets), the data
index of large folders, datasets and the datamodule.

Names are imported lazily so that ``python -m escx.data.prepare`` does not pay for Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AudioDataModule": "escx.data.datamodule",
    "RandomCropDataset": "escx.data.datasets",
    "FixedSegmentDataset": "escx.data.datasets",
    "StreamingCropDataset": "escx.data.datasets",
    "EpochShuffleSampler": "escx.data.datasets",
    "ESC_SEGMENT_SAMPLES": "escx.data.datasets",
    "AudioItem": "escx.data.items",
    "FileItem": "escx.data.items",
    "NoUsableAudioError": "escx.data.items",
    "probe_items": "escx.data.items",
    "SourceSpec": "escx.data.sources",
    "parse_source": "escx.data.sources",
    "folder_items": "escx.data.sources",
    "manifest_items": "escx.data.sources",
    "ManifestError": "escx.data.sources",
    "open_hf_dataset": "escx.data.hf",
    "HFSourceError": "escx.data.hf",
    "generate_corpus": "escx.data.synthetic",
    "AudioTable": "escx.data.table",
    "indexed_folder": "escx.data.index",
    "read_manifest": "escx.data.manifest",
    "ShardCropDataset": "escx.data.shard_stream",
    "write_shards": "escx.data.sharder",
}

__all__ = [
    "AudioDataModule",
    "AudioItem",
    "AudioTable",
    "ShardCropDataset",
    "indexed_folder",
    "read_manifest",
    "write_shards",
    "ESC_SEGMENT_SAMPLES",
    "EpochShuffleSampler",
    "FileItem",
    "FixedSegmentDataset",
    "HFSourceError",
    "ManifestError",
    "NoUsableAudioError",
    "RandomCropDataset",
    "SourceSpec",
    "StreamingCropDataset",
    "folder_items",
    "generate_corpus",
    "manifest_items",
    "open_hf_dataset",
    "parse_source",
    "probe_items",
]

if TYPE_CHECKING:
    from escx.data.datamodule import AudioDataModule
    from escx.data.datasets import (
        ESC_SEGMENT_SAMPLES,
        EpochShuffleSampler,
        FixedSegmentDataset,
        RandomCropDataset,
        StreamingCropDataset,
    )
    from escx.data.hf import HFSourceError, open_hf_dataset
    from escx.data.index import indexed_folder
    from escx.data.items import AudioItem, FileItem, NoUsableAudioError, probe_items
    from escx.data.manifest import read_manifest
    from escx.data.shard_stream import ShardCropDataset
    from escx.data.sharder import write_shards
    from escx.data.sources import (
        ManifestError,
        SourceSpec,
        folder_items,
        manifest_items,
        parse_source,
    )
    from escx.data.synthetic import generate_corpus
    from escx.data.table import AudioTable


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'escx.data' has no attribute {name!r}")
