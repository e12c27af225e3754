"""The shard stream: split across ranks and workers without duplicates, equal epochs, exact
resume in process; and through ``escx fit``, a stopped and resumed run on shards equal to an
uninterrupted one (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_data_index import write_numbered
from torch.utils.data import DataLoader
from training_helpers import ESC, REPO, TINY, logged_losses

from escx.data.shard_files import check_shard
from escx.data.shard_stream import ShardCropDataset
from escx.data.shards import ShardSet, checked_shards

ESCX = str(Path(sys.executable).parent / "escx")
CROP = 4000  # samples: a quarter of each 0.5-s file


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> ShardSet:
    """24 files of constant value (i + 1) / 1024 in 8 shards of 3, in file order."""
    import webdataset as wds

    root = tmp_path_factory.mktemp("shards")
    files = sorted(write_numbered(root / "corpus", 24).iterdir())
    for shard in range(8):
        with wds.TarWriter(str(root / f"s-{shard:06d}.tar"), encoder=False) as writer:
            for i in range(3 * shard, 3 * shard + 3):
                writer.write({"__key__": f"{i:04d}", "flac": files[i].read_bytes(),
                              "json": b"{}"})  # fmt: skip
    found = checked_shards(str(root / "s-{000000..000007}.tar"), None, 1, "test")
    assert found.counts == (3,) * 8
    return found


def _ids(batch: torch.Tensor) -> list[int]:
    """Which file each crop came from (every sample of file i is (i + 1) / 1024)."""
    return [round(float(row[0]) * 1024) - 1 for row in batch]


def _epoch(dataset: ShardCropDataset, workers: int, epoch: int, done: int = 0) -> list[list[int]]:
    dataset.position.copy_(torch.tensor([epoch, done]))
    loader = DataLoader(dataset, batch_size=dataset.batch_size, num_workers=workers)
    return [_ids(batch) for batch in loader]


def test_ranks_and_workers_read_disjoint_shards_and_cover_the_data(shards):
    ranks = [ShardCropDataset(shards, CROP, 16000, seed=7, batch_size=3, rank=r, world_size=2)
             for r in (0, 1)]  # fmt: skip
    assert [len(r) // 3 for r in ranks] == [4, 4]  # 24 samples // (2 ranks x 3) batches each
    for epoch in (0, 1):
        batches = [_epoch(r, workers=2, epoch=epoch) for r in ranks]
        assert [len(b) for b in batches] == [4, 4]  # equal epochs: no rank waits for another
        seen = [i for rank in batches for batch in rank for i in batch]
        assert sorted(seen) == list(range(24)), epoch  # every file once per epoch, no duplicate
        # A batch comes from one worker's shards: 3 consecutive files of one shard here.
        assert all(len({i // 3 for i in batch}) == 1 for rank in batches for batch in rank)
    first, second = (_epoch(ranks[0], 2, e) for e in (0, 1))
    assert first != second  # a new shard order each pass


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on 2 cores
def test_fewer_shards_than_readers_split_by_sample(shards):
    few = ShardSet(shards.urls[:2], shards.counts[:2])  # 6 samples for 2 ranks x 3 workers
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            dataset = ShardCropDataset(few, CROP, 16000, seed=7, batch_size=1, rank=rank,
                                       world_size=2)  # fmt: skip
            seen += [i for batch in _epoch(dataset, workers=3, epoch=epoch) for i in batch]
        assert sorted(seen) == list(range(6)), epoch  # each reader its own sample


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_epoch_continues_with_the_next_batch(shards, workers):
    dataset = ShardCropDataset(shards, CROP, 16000, seed=3, batch_size=2, rank=0, world_size=1)
    whole = [_epoch(dataset, workers, epoch) for epoch in (0, 1, 2)]
    for epoch in (1, 2):
        for done in (1, 5, 11):
            assert _epoch(dataset, workers, epoch, done) == whole[epoch][done:], (epoch, done)


def test_a_shard_cut_at_a_member_boundary_is_found_by_the_full_check(shards, tmp_path):
    whole = Path(shards.urls[0]).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[:2048])  # after the first sample's two members: no end-of-archive
    assert "truncated" in check_shard(str(cut)).error
    info = check_shard(shards.urls[0])
    assert (info.samples, info.size, info.error) == (3, len(whole), "")


@pytest.mark.slow
def test_a_run_on_shards_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path):
    """Two loader workers, shards read through pipe: (allowed), SIGTERM mid-epoch, resume."""
    write_numbered(tmp_path / "corpus", 16, seconds=0.6)
    subprocess.run([ESCX, "data", "shard", "corpus", "-o", "shards", "--shard-size", "1KB"],
                   cwd=tmp_path, check=True, capture_output=True)  # fmt: skip
    count = len(list((tmp_path / "shards").iterdir()))
    pattern = f"pipe:cat {tmp_path}/shards/shard-{{000000..{count - 1:06d}}}.tar"
    env = {**os.environ, "WANDB_MODE": "disabled", "ESCX_ALLOW_PIPE": "1",
           "PYTHONPATH": str(REPO / "tests")}  # fmt: skip
    cmd = [ESCX, "fit", "--config", str(ESC), "--config", str(TINY), "--data.train", pattern,
           "--data.val", "null", "--data.num_workers", "2", "--trainer.default_root_dir", ".",
           "--trainer.max_steps", "14", "--trainer.logger=CSVLogger",
           "--trainer.logger.init_args.save_dir=logs",
           "--trainer.logger.init_args.flush_logs_every_n_steps=1"]  # fmt: skip
    for name in ("full", "stopped"):
        (tmp_path / name).mkdir()
    full = subprocess.run(cmd, cwd=tmp_path / "full", env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    assert full.returncode == 0, full.stderr[-3000:]
    reference = logged_losses(tmp_path / "full")
    assert sorted(reference) == list(range(14))  # 8 batches an epoch: the run crosses one

    folder = tmp_path / "stopped"
    run = subprocess.Popen(cmd, cwd=folder, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 1200
    while len(logged_losses(folder)) < 3 and time.monotonic() < deadline:
        assert run.poll() is None, "the run ended before it could be stopped"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 143, stderr[-3000:]
    done = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 3 <= done < 14  # stopped mid-run (Lightning may not log the batch in flight)
    resumed = subprocess.run([*cmd, "--ckpt_path", "last"], cwd=folder, env=env,
                             capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "0 checked" in resumed.stderr  # the shard counts came from the run's index
    losses = logged_losses(folder)
    assert set(range(14)) - {done - 1} <= set(losses) <= set(range(14))
    for step, loss in losses.items():
        assert loss == pytest.approx(reference[step], rel=1e-5, abs=1e-7), step
