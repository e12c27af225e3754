"""Codebook learning: k-means initialisation, EMA updates, dead-entry restarts, DDP identity,
restart logging, the plain residual VQ and the codebook ablation study.

Most tests drive a single :class:`Codebook` with hand-made vectors so the expected outcome is
known exactly; the DDP test runs two gloo processes on CPU that feed different data.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from training_helpers import ESC, REPO, TINY, free_port, write_corpus

import escx
from escx.config import registries
from escx.data.datamodule import AudioDataModule
from escx.experiments.studies import STUDIES, codebook_study, default_steps
from escx.quantizers.codebook import Codebook
from escx.quantizers.kinds import codebook_spec
from escx.quantizers.kmeans import kmeans
from escx.quantizers.product import ProductQuantizer
from escx.training.module import CodecModule

EXPERIMENTS = REPO / "experiments"


def _blobs(centres: torch.Tensor, per_blob: int, std: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    points = centres.repeat_interleave(per_blob, dim=0)
    return points + std * torch.randn(points.shape, generator=gen)


def _separated_centres(k: int, dim: int, seed: int, norm: float = 4.0) -> torch.Tensor:
    """k directions at least 60 degrees apart (far apart in both metrics), scaled to ``norm``."""
    gen = torch.Generator().manual_seed(seed)
    centres: list[torch.Tensor] = []
    while len(centres) < k:
        c = torch.nn.functional.normalize(torch.randn(dim, generator=gen), dim=0)
        if all(float(c @ other) < 0.5 for other in centres):
            centres.append(c)
    return norm * torch.stack(centres)


def _max_match_error(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Largest distance from a true centre to its nearest found centroid and vice versa."""
    d = torch.cdist(truth, found)
    return max(float(d.min(1).values.max()), float(d.min(0).values.max()))


# ---------------------------------------------------------------- k-means


@pytest.mark.parametrize("cosine", [False, True], ids=["euclidean", "cosine"])
def test_kmeans_recovers_well_separated_clusters(cosine: bool) -> None:
    truth = _separated_centres(8, 6, seed=3)
    data = _blobs(truth, 50, std=0.05, seed=4)
    gen = torch.Generator().manual_seed(0)
    centroids = kmeans(data, 8, iters=10, cosine=cosine, generator=gen)
    assert centroids.shape == (8, 6)
    assert _max_match_error(centroids, truth) < 0.05


def test_kmeans_init_of_a_codebook_recovers_clusters_once() -> None:
    truth = _separated_centres(8, 4, seed=5)
    data = _blobs(truth, 40, std=0.05, seed=6)
    book = Codebook(4, 8, l2norm=True, init="kmeans").train()
    assert not bool(book.initialized)
    book(data[None])
    assert bool(book.initialized)
    assert _max_match_error(book.weight.detach(), truth) < 0.05
    # Raw means are returned, not unit vectors: the codebook quantizes the data it was fit on.
    assert torch.allclose(book.weight.norm(dim=1), torch.full((8,), 4.0), atol=0.1)
    first = book.weight.detach().clone()
    book(data[None] + 1.0)
    assert torch.equal(book.weight, first)  # gradient-learned: only the first batch initialises


def test_kmeans_pools_the_first_batches_and_quantizes_them_with_the_initial_entries() -> None:
    # Each batch holds vectors of only two of the six clusters; k-means must see all three.
    truth = _separated_centres(6, 4, seed=8)
    batches = [_blobs(truth[2 * i : 2 * i + 2], 30, std=0.05, seed=20 + i)[None] for i in range(3)]
    book = Codebook(4, 6, l2norm=True, init="kmeans", kmeans_batches=3).train()
    kaiming = book.weight.detach().clone()
    for batch in batches[:2]:
        _, codes, _, _ = book(batch)
        assert not bool(book.initialized)
        assert torch.equal(codes.flatten(), book.nearest(batch[0]))  # Kaiming entries quantize
    assert torch.equal(book.weight, kaiming)
    book(batches[2])
    assert bool(book.initialized)
    assert _max_match_error(book.weight.detach(), truth) < 0.05


def test_kmeans_with_fewer_vectors_than_entries_uses_every_vector() -> None:
    data = _separated_centres(5, 3, seed=7)
    centroids = kmeans(data, 8, iters=5, generator=torch.Generator().manual_seed(0))
    is_data = (centroids[:, None] == data[None]).all(-1)
    assert is_data.any(1).all()  # every centroid is a data vector (duplicates included)
    assert is_data.any(0).all()  # and every data vector is a centroid


# ---------------------------------------------------------------- restarts


def _fixed_book(size: int = 8, l2norm: bool = False, **options) -> tuple[Codebook, torch.Tensor]:
    """A 2-d codebook whose entries sit on a circle of radius 10 (well apart in both metrics)."""
    book = Codebook(2, size, l2norm=l2norm, **options).train()
    angles = torch.arange(size) * 2 * math.pi / size
    entries = 10 * torch.stack([angles.cos(), angles.sin()], dim=1)
    book.weight.data.copy_(entries)
    return book, entries


def _batch_for(entries: torch.Tensor, counts: list[int], seed: int) -> torch.Tensor:
    """Vectors next to each entry, ``counts[i]`` of them for entry i: (1, N, dim)."""
    gen = torch.Generator().manual_seed(seed)
    index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return (entries[index] + 0.1 * torch.randn(len(index), 2, generator=gen))[None]


def test_restarts_fire_on_unused_entries_and_not_on_used_ones() -> None:
    book, entries = _fixed_book(dead_threshold=0.5, usage_decay=0.5)
    counts = [16, 16, 16, 16, 0, 0, 0, 0]  # entries 4..7 never win a vector
    book(_batch_for(entries, counts, seed=0))
    assert book.pop_restarts() == 0  # usage 0.5 x uniform: not yet below the threshold
    assert torch.equal(book.weight, entries)
    batch = _batch_for(entries, counts, seed=1)
    book(batch)
    weight = book.weight.detach()
    assert book.pop_restarts() == 4 and book.pop_restarts() == 0
    assert torch.equal(weight[:4], entries[:4]), "a used entry was restarted"
    assert (weight[4:] != entries[4:]).any(1).all(), "an unused entry was not restarted"
    assert (weight[4:, None] == batch[0][None]).all(-1).any(1).all()  # from the batch


@pytest.mark.parametrize("batch", [100, 1000])
def test_dead_threshold_is_a_fraction_of_uniform_usage(batch: int) -> None:
    # The same usage shares at two batch sizes give the same dead set: entry 4 wins 7% of the
    # vectors (above half the uniform 12.5%) and survives, entry 5 wins 1% and is restarted.
    shares = [0.23, 0.23, 0.23, 0.23, 0.07, 0.01, 0.0, 0.0]
    book, entries = _fixed_book(dead_threshold=0.5, usage_decay=0.5)
    counts = [round(s * batch) for s in shares]
    for step in range(2):
        book(_batch_for(entries, counts, seed=step))
    changed = (book.weight.detach() != entries).any(1)
    assert torch.nonzero(changed).flatten().tolist() == [5, 6, 7]


def test_restart_counts_are_reported_per_stream(quantizer_name, make_codec, short_audio) -> None:
    codec = make_codec("SwinEncoder", "SwinDecoder", quantizer_name, dead_threshold=1e6).train()
    codec(short_audio, 1)
    every = codec.num_groups * codec.codebook_size  # all entries of each stream's codebooks
    expected = {s: every for s in range(1, codec.max_streams + 1)}
    assert codec.quantizer.pop_restart_counts() == expected
    assert codec.quantizer.pop_restart_counts() == dict.fromkeys(expected, 0)
    default = make_codec("SwinEncoder", "SwinDecoder", quantizer_name).train()
    default(short_audio, 1)
    assert default.quantizer.pop_restart_counts() == {}


class _Restarts(L.Callback):
    """Records the restart metrics logged by each training batch."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        metrics = trainer.callback_metrics
        self.steps.append({k: float(v) for k, v in metrics.items() if "restarts" in k})


def test_training_logs_restarts_per_stream(tmp_path: Path) -> None:
    train = write_corpus(tmp_path / "train", 2, 0.5, seed=3)
    overlay = {"model": {"codec": {"init_args": {"quantizer": {"init_args": {
        "dead_threshold": 1e6}}}}}}  # fmt: skip
    codec = escx.build_codec(str(ESC), str(TINY), overlay)
    module = CodecModule(codec, pretrain_steps=1, val_kbps=[9.0], audio_examples=0)
    probe = _Restarts()
    trainer = L.Trainer(
        default_root_dir=tmp_path, max_steps=2, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
        callbacks=[probe],
    )  # fmt: skip
    data = AudioDataModule(train=str(train), val=None, batch_size=2, segment_samples=6400)
    trainer.fit(module, data)
    names = [f"train/codebook/restarts/stream{s}" for s in range(1, codec.max_streams + 1)]
    pretraining, quantized = probe.steps
    assert pretraining == dict.fromkeys(names, 0.0)  # bypassed: codebooks untouched
    assert quantized == dict.fromkeys(names, 3.0 * codec.codebook_size)  # every entry restarted


# ---------------------------------------------------------------- EMA


@pytest.mark.parametrize("l2norm", [False, True], ids=["euclidean", "cosine"])
def test_ema_moves_entries_toward_their_assigned_vectors(l2norm: bool) -> None:
    book, entries = _fixed_book(l2norm=l2norm, ema_decay=0.8)
    book.ema_sum.copy_(entries)  # EMA state that matches the placed entries (count 1 each)
    targets = entries[:2] * 1.3 + torch.tensor([0.5, -0.5])  # where entries 0 and 1's data sit
    gen = torch.Generator().manual_seed(0)
    distances = [(book.weight[:2] - targets).norm(dim=1)]
    for _ in range(30):
        batch = targets.repeat_interleave(32, 0) + 0.05 * torch.randn(64, 2, generator=gen)
        _, codes, _, codebook_loss = book(batch[None])
        assert set(codes.flatten().tolist()) == {0, 1}
        assert float(codebook_loss.abs().sum()) == 0.0  # EMA entries take no codebook loss
        distances.append((book.weight[:2] - targets).norm(dim=1))
    assert (distances[1] < distances[0]).all()  # the first step already moves toward the data
    assert (distances[-1] < 0.05).all()
    assert not book.weight.requires_grad


# ---------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        torch.set_num_threads(1)
        torch.manual_seed(0)  # identical projections, as DDP's initial broadcast would make them
        options = {
            "init": "kmeans",
            "kmeans_batches": 2,
            "ema_decay": 0.9,
            "dead_threshold": 1.0,
            "usage_decay": 0.5,
        }
        pq = ProductQuantizer(12, groups=2, stages=2, codebook_dim=3,
                              codebook=codebook_spec(size=16, **options)).train()  # fmt: skip
        torch.manual_seed(100 + rank)  # each rank now draws its own data and restart choices
        centres = 3 * torch.randn(4, 12) + (8.0 if rank else -8.0)
        restarts = 0
        for step in range(6):
            v = _blobs(centres, 24, std=0.3, seed=10 * rank + step)[torch.randperm(96)]
            pq(v.view(4, 24, 12), n_active=2)
            restarts += sum(book.pop_restarts() for stage in pq.codebooks_by_stage()
                            for book in stage)  # fmt: skip
        state = {k: v for k, v in pq.state_dict().items() if "codebooks" in k}
        # k-means pools every rank's vectors: rank 0 sees only cluster A, rank 1 only cluster B.
        pooled = Codebook(2, 4, l2norm=False, init="kmeans").train()
        cluster = torch.tensor([5.0, 0.0]) if rank == 0 else torch.tensor([0.0, 5.0])
        pooled((cluster + 0.1 * torch.randn(32, 2))[None])
        torch.save({"state": state, "restarts": restarts, "pooled": pooled.weight.detach()},
                   Path(out_dir) / f"rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
def test_two_gloo_ranks_with_different_data_keep_identical_codebooks(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["restarts"] == ranks[1]["restarts"] > 0
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    assert set(state0) == set(state1) and any(k.endswith("ema_sum") for k in state0)
    for key in state0:
        assert torch.equal(state0[key], state1[key]), f"{key} differs between ranks"
    assert all(bool(v) for k, v in state0.items() if k.endswith("initialized"))
    pooled = ranks[0]["pooled"]
    assert torch.equal(pooled, ranks[1]["pooled"])
    for cluster in ([5.0, 0.0], [0.0, 5.0]):  # centroids in both ranks' clusters
        assert (pooled - torch.tensor(cluster)).norm(dim=1).min() < 0.5


# ---------------------------------------------------------------- options, plain RVQ, study


@pytest.mark.parametrize(
    ("option", "value", "names"),
    [
        ("codebook_init", "random", "codebook_init"),
        ("ema_decay", 1.5, "ema_decay"),
        ("dead_threshold", -0.1, "dead_threshold"),
        ("usage_decay", 0.0, "usage_decay"),
        ("kmeans_iters", -1, "kmeans_iters"),
        ("kmeans_batches", 0, "kmeans_batches"),
    ],
)
def test_bad_codebook_options_fail_at_construction_in_one_line(
    quantizer_name, option, value, names
) -> None:
    cls = registries()["quantizer"].get(quantizer_name)
    if option not in inspect.signature(cls.__init__).parameters:
        pytest.skip(f"{quantizer_name} has no option {option}")
    with pytest.raises(ValueError) as info:
        cls(**{option: value})
    assert names in str(info.value) and "\n" not in str(info.value)


def test_plain_rvq_quantizes_full_code_frames_at_half_a_kbps_per_stream() -> None:
    codec = escx.build_codec(ESC, EXPERIMENTS / "ablations" / "plain-rvq-swin.yaml")
    quantizer = codec.quantizer
    assert type(quantizer).__name__ == "PlainRVQ"
    books = [b for stream in quantizer.codebooks_by_stream() for b in stream]
    assert len(books) == 18 and {(b.size, b.dim) for b in books} == {(1024, 2 * 384 * 2)}
    assert not any(isinstance(m, torch.nn.Linear) for m in quantizer.modules())
    # 10 bits x 50 code frames/s per stream; 18 streams reach ESC's 9 kbps.
    assert [codec.bitrate(s) for s in (1, 3, 18)] == [500.0, 1500.0, 9000.0]
    # ESC-Base's encoder and decoder (8,005,445) plus 18 x 1024 x 1536 codewords; in the README.
    assert sum(p.numel() for p in quantizer.parameters()) == 18 * 1024 * 1536
    assert sum(p.numel() for p in codec.parameters()) == 36_316_997
    audio = torch.randn(1, 3200) * 0.1
    with torch.no_grad():
        codes = codec.encode(audio, 3)
        assert codes.shape == (1, 3, 1, codec.num_frames(3200))
        assert codec.decode(codes, 3200).shape == (1, 3200)


def _codebooks(codec) -> list[Codebook]:
    return [m for m in codec.quantizer.modules() if isinstance(m, Codebook)]


def test_codebook_study_compares_pretraining_with_three_techniques() -> None:
    assert STUDIES["codebook"] is codebook_study
    variants = codebook_study(500)
    assert [v.name for v in variants] == [
        "pretraining", "kmeans-init", "dead-restarts", "ema-updates",
    ]  # fmt: skip
    assert variants[0].overrides == ["--model.pretrain_steps=50"] and not variants[0].configs
    expected = {  # (init, EMA updates, restarts): ESC's defaults except one technique each
        "pretraining": ("kaiming", False, False),
        "kmeans-init": ("kmeans", False, False),
        "dead-restarts": ("kaiming", False, True),
        "ema-updates": ("kaiming", True, False),
    }
    for variant in variants:
        if variant.name != "pretraining":
            assert variant.overrides == ["--model.pretrain_steps=0"]
        configs = [ESC, EXPERIMENTS / "tiny.yaml", *(REPO / c for c in variant.configs)]
        codec = escx.build_codec(*configs)
        assert type(codec.quantizer).__name__ == "CrossScaleRVQ"  # same model for every arm
        books = _codebooks(codec)
        settings = {(b.init, b.ema_decay is not None, b.restarts_enabled) for b in books}
        assert settings == {expected[variant.name]}, variant.name
    assert default_steps("codebook", "tiny", "esc") == 500
    assert default_steps("codebook", "tiny", "quick") == 1000
    assert default_steps("codebook", "base", "esc") == 250_000
