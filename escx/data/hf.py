"""Hugging Face datasets as audio sources, decoded with soundfile.

``datasets`` 5.x decodes its ``Audio`` feature with torchcodec, which escx does not install (it
needs FFmpeg's shared libraries). So the audio column is cast to ``Audio(decode=False)``, which
gives ``{"bytes", "path"}`` per row, and the bytes (or the file at ``path``) are decoded here with
soundfile. Columns that hold a plain path string, raw bytes, or already decoded
``{"array", "sampling_rate"}`` dicts work too.

``NAME`` in ``hf:NAME[:SPLIT]`` is a local folder written by ``Dataset.save_to_disk`` /
``DatasetDict.save_to_disk``, another local folder ``datasets.load_dataset`` understands (parquet,
csv, json files), or a hub id. ``HF_HUB_OFFLINE=1`` makes a hub id that is not cached fail at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from escx.audio import AudioError, AudioInfo
from escx.data.items import ArrayItem, AudioItem, BytesItem, FileItem

log = logging.getLogger(__name__)

# Splits tried, in order, when a spec names none.
DEFAULT_SPLITS = {
    "train": ("train",),
    "val": ("validation", "valid", "val", "dev", "test"),
    "test": ("test",),
}


class HFSourceError(ValueError):
    """A Hugging Face dataset that cannot be opened or has no usable audio column."""


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _choose_split(available: Sequence[str], split: str | None, defaults: Sequence[str], what: str):
    if split is not None:
        if split.split("[")[0] not in available:
            raise HFSourceError(f"{what} has no split {split!r}; available: {', '.join(available)}")
        return split
    for name in defaults:
        if name in available:
            return name
    if len(available) == 1:
        return available[0]
    raise HFSourceError(
        f"{what} has splits {', '.join(available)}: name one, e.g. hf:NAME:{available[0]}"
    )


def _load(
    name: str,
    split: str | None,
    defaults: Sequence[str],
    config: str | None,
    streaming: bool,
    cache_dir: str | None,
):
    import datasets

    what = f"hf:{name}"
    local = Path(name).expanduser()
    if local.is_dir() and (local / "dataset_dict.json").is_file():
        dd = datasets.load_from_disk(str(local))
        ds = dd[_choose_split(list(dd.keys()), split, defaults, what)]
    elif local.is_dir() and (local / "state.json").is_file():
        if split is not None:
            raise HFSourceError(f"{what} is a single dataset without splits; drop ':{split}'")
        ds = datasets.load_from_disk(str(local))
    else:
        if split is None and not local.is_dir():
            available = datasets.get_dataset_split_names(name, config, cache_dir=cache_dir)
            split = _choose_split(available, None, defaults, what)
        elif split is None:
            split = defaults[0]
        return datasets.load_dataset(
            str(local) if local.is_dir() else name,
            config,
            split=split,
            streaming=streaming,
            cache_dir=cache_dir,
        )
    if streaming:
        return ds.to_iterable_dataset(num_shards=max(1, min(len(ds), 64)))
    return ds


def open_hf_dataset(
    name: str,
    split: str | None = None,
    *,
    role: str = "train",
    config: str | None = None,
    audio_column: str = "audio",
    streaming: bool = False,
    cache_dir: str | None = None,
):
    """Open a dataset and prepare its audio column for soundfile decoding.

    Args:
        name: hub id or local folder.
        split: split name (slices such as ``train[:100]`` work for non-local datasets); None picks
            the usual split for ``role`` (train: ``train``; val: ``validation``, ``valid``,
            ``val``, ``dev`` or ``test``; test: ``test``), or the only split.
        role: ``"train"``, ``"val"`` or ``"test"``; only used to choose the default split.
        config: dataset configuration (e.g. ``"clean"`` for ``openslr/librispeech_asr``).
        audio_column: the column holding the audio.
        streaming: return an ``IterableDataset`` that reads lazily (large corpora).
        cache_dir: ``datasets`` cache folder (default: ``HF_HOME``).

    Returns:
        A ``datasets.Dataset`` or ``IterableDataset`` holding only ``audio_column``.

    Raises:
        HFSourceError: the dataset, split or column cannot be found (one line).
    """
    what = f"hf:{name}" + (f":{split}" if split else "")
    try:
        ds = _load(name, split, DEFAULT_SPLITS.get(role, (role,)), config, streaming, cache_dir)
    except HFSourceError:
        raise
    except Exception as err:  # datasets raises many types (network, file-not-found, config)
        raise HFSourceError(
            f"cannot load Hugging Face dataset {what}: {_first_line(err)}; check the name, split "
            "and config, the network, or HF_HUB_OFFLINE"
        ) from None
    columns = ds.column_names
    if columns is not None and audio_column not in columns:
        raise HFSourceError(
            f"{what} has no column {audio_column!r} (columns: {', '.join(columns)}); "
            "pass --data.hf_audio_column NAME"
        )
    if columns is not None and len(columns) > 1:
        ds = ds.select_columns([audio_column])
    import datasets

    feature = (ds.features or {}).get(audio_column)
    if isinstance(feature, datasets.Audio) and feature.decode:
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    return ds


def value_to_item(value: Any, name: str, base_dir: Path | None = None) -> AudioItem:
    """Turn one row's audio value into an item.

    Args:
        value: ``{"bytes", "path"}``, ``{"array", "sampling_rate"}``, a path string or bytes.
        name: what messages call this row.
        base_dir: a folder against which relative paths are also tried (local datasets).

    Raises:
        AudioError: the value holds no audio.
    """
    if isinstance(value, dict):
        if value.get("bytes"):
            label = f"{name} ({value['path']})" if value.get("path") else name
            return BytesItem(label, value["bytes"])
        if value.get("array") is not None:
            return ArrayItem(name, value["array"], int(value.get("sampling_rate") or 0) or 16000)
        value = value.get("path")
    if isinstance(value, bytes | bytearray) and value:
        return BytesItem(name, bytes(value))
    if isinstance(value, str) and value:
        path = Path(value).expanduser()
        if not path.is_absolute() and not path.exists() and base_dir is not None:
            path = base_dir / path
        return FileItem(path)
    raise AudioError(f"{name} holds no audio (no bytes, array or path)")


def _base_dir(ds) -> Path | None:
    files = getattr(ds, "cache_files", None) or []
    return Path(files[0]["filename"]).parent if files else None


class HFRowItem(AudioItem):
    """One row of a map-style dataset, fetched on demand (so workers do not copy the corpus)."""

    def __init__(self, dataset, column: str, index: int, label: str, base_dir: Path | None):
        self.dataset, self.column, self.index, self.base_dir = dataset, column, index, base_dir
        self.name = f"{label}[{index}]"

    def _item(self) -> AudioItem:
        return value_to_item(self.dataset[self.index][self.column], self.name, self.base_dir)

    def info(self, sample_rate: int) -> AudioInfo:
        return self._item().info(sample_rate)

    def read(self, sample_rate: int, offset: int = 0, num_frames: int | None = None) -> Tensor:
        return self._item().read(sample_rate, offset, num_frames)


def hf_items(ds, column: str, label: str) -> list[AudioItem]:
    """Lazy items for every row of a map-style dataset."""
    base = _base_dir(ds)
    return [HFRowItem(ds, column, i, label, base) for i in range(len(ds))]


def iter_items(ds, column: str, label: str) -> Iterator[AudioItem]:
    """Items for the rows of a (streaming) dataset, in its order; rows without audio are skipped."""
    base = _base_dir(ds)
    for i, row in enumerate(ds):
        try:
            yield value_to_item(row[column], f"{label}[{i}]", base)
        except AudioError as err:
            log.debug("skipping %s", err)
