"""LightningDataModule serving (B, L) float32 batches of 16 kHz mono speech.

Selected on the command line as ``--data.train``, ``--data.val``, ``--data.test``; each takes a
folder, a ``.csv``/``.jsonl`` manifest, or ``hf:NAME[:SPLIT]`` (see :mod:`escx.data.sources` and
``data/README.md``).
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from escx.data.datasets import (
    ESC_SEGMENT_SAMPLES,
    EpochShuffleSampler,
    FixedSegmentDataset,
    RandomCropDataset,
    StreamingCropDataset,
)
from escx.data.hf import hf_items, iter_items, open_hf_dataset
from escx.data.items import AudioItem, log_once_per_process, show_data_notices
from escx.data.precheck import precheck_train_source
from escx.data.resumable import ResumableDataLoader
from escx.data.shard_stream import ShardCropDataset, ShardLoader
from escx.data.sources import SourceSpec, folder_items, manifest_items, parse_source
from escx.data.train_sources import TrainSources
from escx.security.resources import check_data_sizes, check_workers, usable_cores

log = logging.getLogger(__name__)

SOURCE_FORMS = "a folder, a .csv/.jsonl manifest, WebDataset shards (train), or hf:NAME[:SPLIT]"


class _EpochLoader(DataLoader):
    """DataLoader that tells its iterable dataset the epoch each time iteration starts.

    Lightning calls ``set_epoch`` on samplers only, and an iterable dataset has none.
    """

    epochs_started = 0

    def __iter__(self):
        self.dataset.set_epoch(self.epochs_started)
        self.epochs_started += 1
        return super().__iter__()


class AudioDataModule(L.LightningDataModule):
    """Training crops and fixed validation/test segments of mono audio.

    Training yields one random crop per file and epoch (deterministic given ``seed``), shuffled
    with a seeded sampler that Lightning shards across DDP ranks. Validation/test yield the first
    ``val_segments_per_file`` segments of each file, the same every epoch.

    Args:
        train: training audio: a folder, a ``.csv``/``.jsonl`` manifest, or ``hf:NAME[:SPLIT]``
            (hub id or ``save_to_disk`` folder); None for no training data.
        val: validation audio, same forms; None disables validation.
        test: test audio, same forms; needed only by ``trainer.test``.
        sample_rate: rate the audio is read at (files at other rates are resampled, multichannel
            files averaged to mono).
        segment_samples: training crop length. The default 47 920 is 3 s minus one 80-sample
            hop, ESC's training clip (docs/esc.md §2, §13.7); shorter files are zero-padded.
        val_segment_samples: validation/test segment length; None evaluates whole files (the
            validation batch size is then 1).
        batch_size: training batch size per device (ESC: 9 per device on 4 devices,
            docs/esc.md §13.1).
        val_batch_size: validation/test batch size per device; None uses ``batch_size``.
        num_workers: DataLoader worker processes per device.
        max_val_files: use only the first this many validation files (keeps validation fast).
        val_segments_per_file: segments taken from each validation/test file; None cuts whole
            files into consecutive segments.
        hf_audio_column: audio column of ``hf:`` datasets.
        hf_config: configuration name of ``hf:`` hub datasets (e.g. ``clean`` for LibriSpeech).
        streaming: stream ``hf:`` training data instead of downloading it first.
        seed: seed of the shuffling and of the random crops.
        index: keep a data index of a training folder (:mod:`escx.data.index`): the first start
            checks every file, later starts only new or changed ones.
        index_dir: where the index is kept; None: ``<trainer.default_root_dir>/index``. A
            folder shared by several runs lets them share one scan.
    """

    def __init__(
        self,
        train: str | None = "data/train",
        val: str | None = "data/val",
        test: str | None = None,
        sample_rate: int = 16000,
        segment_samples: int = ESC_SEGMENT_SAMPLES,
        val_segment_samples: int | None = ESC_SEGMENT_SAMPLES,
        batch_size: int = 9,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        max_val_files: int | None = None,
        val_segments_per_file: int | None = 1,
        hf_audio_column: str = "audio",
        hf_config: str | None = None,
        streaming: bool = False,
        seed: int = 53,
        index: bool = True,
        index_dir: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("sample_rate", sample_rate),
            ("segment_samples", segment_samples),
            ("batch_size", batch_size),
        ):
            if value <= 0:
                raise ValueError(f"data.{name} must be positive, got {value}")
        for name, value in (
            ("val_segment_samples", val_segment_samples),
            ("val_batch_size", val_batch_size),
            ("max_val_files", max_val_files),
            ("val_segments_per_file", val_segments_per_file),
        ):
            if value is not None and value <= 0:
                raise ValueError(f"data.{name} must be positive or null, got {value}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        check_data_sizes(  # before anything is allocated (escx.security.resources)
            sample_rate, segment_samples, val_segment_samples, batch_size, val_batch_size
        )
        check_workers(num_workers)
        if train is not None:  # cheap checks now, before the trainer prints or writes anything
            precheck_train_source(parse_source(train))
        self.save_hyperparameters()
        self.train, self.val, self.test = train, val, test
        self.sample_rate = sample_rate
        self.segment_samples, self.val_segment_samples = segment_samples, val_segment_samples
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.max_val_files = num_workers, max_val_files
        self.val_segments_per_file = val_segments_per_file
        self.hf_audio_column, self.hf_config = hf_audio_column, hf_config
        self.streaming, self.seed = streaming, seed
        self.index, self.index_dir = index, index_dir
        self.datasets: dict[str, Dataset] = {}

    # ---- building -------------------------------------------------------------------------

    def _hint(self, role: str) -> str:
        where = f"pass --data.{role} DIR ({SOURCE_FORMS})"
        return f"run `make data` or {where}" if role in ("train", "val") else where

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _open_hf(self, spec: SourceSpec, role: str, streaming: bool):
        return open_hf_dataset(
            spec.location,
            spec.split,
            role=role,
            config=self.hf_config,
            audio_column=self.hf_audio_column,
            streaming=streaming,
        )

    def _items(self, role: str, spec: SourceSpec, limit: int | None) -> list[AudioItem]:
        hint = self._hint(role)
        if spec.kind == "folder":
            return folder_items(spec.location, hint)
        if spec.kind == "manifest":
            return manifest_items(spec.location, hint)
        ds = self._open_hf(spec, role, self.streaming)
        if not self.streaming:
            return hf_items(ds, self.hf_audio_column, str(spec))
        # Evaluation sets are small: hold the first rows of a stream in memory.
        return list(itertools.islice(iter_items(ds, self.hf_audio_column, str(spec)), limit))

    def _train_sources(self) -> TrainSources:
        index_dir = self.index_dir
        if index_dir is None and self.trainer is not None:
            index_dir = os.path.join(self.trainer.default_root_dir, "index")
        devices = max(1, getattr(self.trainer, "num_devices", 1) or 1)
        return TrainSources(
            sample_rate=self.sample_rate,
            index_dir=index_dir if self.index else None,
            # Processes per rank that check files: the loader's workers, or this rank's cores.
            workers=max(1, self.num_workers, usable_cores() // devices),
            hint=self._hint("train"),
        )

    def build(self, role: str) -> Dataset | None:
        """Build (once) and return the dataset for ``"train"``, ``"val"`` or ``"test"``."""
        if role in self.datasets:
            return self.datasets[role]
        source = {"train": self.train, "val": self.val, "test": self.test}[role]
        if source is None:
            return None
        spec = parse_source(source)
        label = str(spec)
        if role == "train" and spec.kind == "hf" and self.streaming:
            rank, world = self._rank()
            ds = self._open_hf(spec, role, streaming=True)
            dataset: Dataset = StreamingCropDataset(
                ds,
                self.hf_audio_column,
                self.segment_samples,
                self.sample_rate,
                self.seed,
                rank=rank,
                world_size=world,
                label=label,
            )
        elif role == "train" and spec.kind == "shards":
            rank, world = self._rank()
            shards = self._train_sources().shards(spec)
            dataset = ShardCropDataset(shards, self.segment_samples, self.sample_rate, self.seed,
                                       self.batch_size, rank, world, label=label)  # fmt: skip
        elif spec.kind == "shards":
            raise ValueError(
                f"--data.{role} {label}: shards are a training source; give --data.{role} a "
                "folder or a manifest"
            )
        elif role == "train":
            dataset = RandomCropDataset(
                self._train_sources().table(spec) or self._items(role, spec, None),
                self.segment_samples,
                self.sample_rate,
                self.seed,
                label=label,
                hint=self._hint(role),
            )
        else:
            limit = self.max_val_files if role == "val" else None
            dataset = FixedSegmentDataset(
                self._items(role, spec, limit),
                self.val_segment_samples,
                self.sample_rate,
                self.val_segments_per_file,
                max_files=limit,
                label=label,
                hint=self._hint(role),
            )
        if hasattr(dataset, "files"):
            counts = f"{len(dataset.files)} files, {len(dataset)} items"
            log_once_per_process(logging.INFO, f"{role} data {label}: {counts}")
        self.datasets[role] = dataset
        return dataset

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (each source is checked once)."""
        show_data_notices()
        if stage in (None, "fit"):
            if self.train is None:
                raise ValueError(f"no training data: pass --data.train with {SOURCE_FORMS}")
            self.build("train")
        if stage in (None, "fit", "validate"):
            if stage == "validate" and self.val is None:
                raise ValueError(f"no validation data: pass --data.val with {SOURCE_FORMS}")
            self.build("val")
        if stage == "test":
            if self.test is None:
                raise ValueError(f"no test data: pass --data.test with {SOURCE_FORMS}")
            self.build("test")

    # ---- loaders --------------------------------------------------------------------------

    def _loader_options(self) -> dict:
        return {
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": torch.cuda.is_available(),
        }

    def train_dataloader(self) -> DataLoader:
        """Shuffled crops, (B, segment_samples) float32 batches."""
        dataset = self.build("train")
        if dataset is None:
            raise ValueError(f"no training data: pass --data.train with {SOURCE_FORMS}")
        if isinstance(dataset, StreamingCropDataset):
            loader = _EpochLoader(
                dataset, batch_size=self.batch_size, drop_last=True, **self._loader_options()
            )
            loader.epochs_started = self.trainer.current_epoch if self.trainer is not None else 0
            return loader
        trainer = self.trainer
        if isinstance(dataset, ShardCropDataset):
            # Each worker reads its own share of the stream (escx.data.shard_stream), so the
            # length is exact; PyTorch warns about __len__ with workers whatever the dataset.
            warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__`")
            return ShardLoader(
                dataset,
                position_fn=lambda: _position(trainer),
                batch_size=self.batch_size,
                **self._loader_options(),
            )
        _, world = self._rank()
        return ResumableDataLoader(
            dataset,
            consumed_fn=(lambda: _batches_trained(trainer)) if trainer is not None else None,
            batch_size=self.batch_size,
            sampler=EpochShuffleSampler(len(dataset), self.seed),
            # Keep every batch full, unless the data would then give no batch at all.
            drop_last=len(dataset) >= self.batch_size * world,
            **self._loader_options(),
        )

    def _eval_loader(self, role: str) -> DataLoader | list:
        dataset = self.build(role)
        if dataset is None:
            return []
        batch_size = self.val_batch_size if self.val_segment_samples is not None else 1
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, **self._loader_options())

    def val_dataloader(self) -> DataLoader | list:
        """Fixed segments, (B, val_segment_samples) float32 batches (or (1, L) whole files)."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        """Like :meth:`val_dataloader` for the test source."""
        return self._eval_loader("test")


def _position(trainer: L.Trainer | None) -> tuple[int, int]:
    """(epoch, batches of it trained): where a training stream stands."""
    if trainer is None:
        return 0, 0
    return trainer.current_epoch, _batches_trained(trainer)


def _batches_trained(trainer: L.Trainer) -> int:
    """Batches of the current epoch Lightning has trained on (its own resume bookkeeping)."""
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed
