"""Two gloo ranks training with different data keep every codebook kind identical.

Each rank builds the same small codec (same seed, as Lightning's DDP start would), wraps it in
``DistributedDataParallel`` and takes Adam steps on its own batches. Parameters and buffers
(persistent or not: SimVQ's frozen basis, FSQ's level constants) must then be equal on both ranks,
for every kind variant of test_codebook_kinds (in the cross-scale quantizer).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import small_codec
from test_codebook_kinds import KINDS
from torch.nn.parallel import DistributedDataParallel
from training_helpers import free_port

VARIANTS = [(param.id, param.values[0]) for param in KINDS]
QUANTIZERS = ("CrossScaleRVQ",)  # a codebook slot per scale; the kinds hold the DDP logic


def _snapshot(codec: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = dict(codec.named_parameters())
    tensors.update(codec.named_buffers())
    return {name: t.detach().clone() for name, t in tensors.items()}


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        torch.set_num_threads(1)
        results = {}
        for quantizer in QUANTIZERS:
            for label, variant in VARIANTS:
                torch.manual_seed(0)
                codec = small_codec("SwinEncoder", "SwinDecoder", quantizer, **variant).train()
                before = _snapshot(codec)
                model = DistributedDataParallel(codec)
                optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
                gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
                for _ in range(2):
                    audio = 0.1 * torch.randn(2, 3200, generator=gen)
                    out = model(audio, codec.max_streams)
                    loss = (out.audio - audio).pow(2).mean() + sum(out.quantizer.losses.values())
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                results[f"{quantizer}/{label}"] = (before, _snapshot(codec))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_two_gloo_ranks_keep_every_codebook_kind_identical(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert set(ranks[0]) == {f"{q}/{label}" for q in QUANTIZERS for label, _ in VARIANTS}
    for key, (before, after) in ranks[0].items():
        other = ranks[1][key][1]
        assert set(after) == set(other), key
        for name in after:
            assert torch.equal(after[name], other[name]), f"{key}: {name} differs between ranks"
        moved = [n for n in after if not torch.equal(after[n], before[n])]
        assert any(n.startswith("encoder.") for n in moved), f"{key}: training changed nothing"
